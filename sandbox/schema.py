"""Built-in object schemas of the sandbox: HubSpot default properties and Salesforce standard fields."""

from __future__ import annotations

from typing import Any

HS_OBJECT_TYPES = ("contacts", "companies", "deals", "calls", "emails", "meetings", "notes", "tasks")
# Activities (engagements): CRM objects like the others, each with its own v3 endpoints and an hs_timestamp.
HS_ENGAGEMENT_TYPES = ("calls", "emails", "meetings", "notes", "tasks")

# v3 and v4 accept singular, plural and numeric type ids for the same object.
HS_TYPE_ALIASES = {
    "contact": "contacts",
    "contacts": "contacts",
    "0-1": "contacts",
    "company": "companies",
    "companies": "companies",
    "0-2": "companies",
    "deal": "deals",
    "deals": "deals",
    "0-3": "deals",
    "call": "calls",
    "calls": "calls",
    "0-48": "calls",
    "email": "emails",
    "emails": "emails",
    "0-49": "emails",
    "meeting": "meetings",
    "meetings": "meetings",
    "0-47": "meetings",
    "note": "notes",
    "notes": "notes",
    "0-46": "notes",
    "task": "tasks",
    "tasks": "tasks",
    "0-27": "tasks",
}
HS_SINGULAR = {"contacts": "contact", "companies": "company", "deals": "deal", "calls": "call", "emails": "email",
               "meetings": "meeting", "notes": "note", "tasks": "task"}
HS_TYPE_IDS = {"contacts": "0-1", "companies": "0-2", "deals": "0-3", "calls": "0-48", "emails": "0-49",
               "meetings": "0-47", "notes": "0-46", "tasks": "0-27"}

# Default association type ids (HUBSPOT.md §2), keyed by (from, to): (unlabelled, primary or None).
HS_ASSOC_TYPE_IDS: dict[tuple[str, str], tuple[int, int | None]] = {
    ("contacts", "companies"): (279, 1),
    ("companies", "contacts"): (280, 2),
    ("deals", "contacts"): (3, None),
    ("contacts", "deals"): (4, None),
    ("deals", "companies"): (341, 5),
    ("companies", "deals"): (342, 6),
    # Activities <-> contacts (HubSpot's default type ids for engagements; treat them as data).
    ("contacts", "calls"): (193, None),
    ("calls", "contacts"): (194, None),
    ("contacts", "emails"): (197, None),
    ("emails", "contacts"): (198, None),
    ("contacts", "meetings"): (199, None),
    ("meetings", "contacts"): (200, None),
    ("contacts", "notes"): (201, None),
    ("notes", "contacts"): (202, None),
    ("contacts", "tasks"): (203, None),
    ("tasks", "contacts"): (204, None),
}

# Properties returned when a read names none (HUBSPOT.md §1.2).
HS_DEFAULT_READ = {
    "contacts": ["createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname"],
    "companies": ["createdate", "domain", "hs_lastmodifieddate", "hs_object_id", "name"],
    "deals": ["amount", "closedate", "createdate", "dealname", "dealstage", "hs_lastmodifieddate", "hs_object_id", "pipeline"],
    **{t: ["hs_createdate", "hs_lastmodifieddate", "hs_object_id"] for t in HS_ENGAGEMENT_TYPES},
}
HS_MODIFIED_PROPERTY = {"contacts": "lastmodifieddate", "companies": "hs_lastmodifieddate", "deals": "hs_lastmodifieddate",
                        **{t: "hs_lastmodifieddate" for t in HS_ENGAGEMENT_TYPES}}
# Activities name their creation hs_createdate; the other objects createdate.
HS_CREATED_PROPERTY = {"contacts": "createdate", "companies": "createdate", "deals": "createdate",
                       **{t: "hs_createdate" for t in HS_ENGAGEMENT_TYPES}}
# Properties HubSpot requires when an object is created (an activity without hs_timestamp is refused).
HS_REQUIRED_ON_CREATE = {t: ("hs_timestamp",) for t in HS_ENGAGEMENT_TYPES}

# Contact lead status (hs_lead_status) options of a new portal.
LEAD_STATUSES = ["NEW", "OPEN", "IN_PROGRESS", "OPEN_DEAL", "UNQUALIFIED", "ATTEMPTED_TO_CONTACT", "CONNECTED",
                 "BAD_TIMING"]
# Per activity type: (name, label, type, fieldType, options or None).
HS_ENGAGEMENT_PROPERTIES: dict[str, list[tuple[str, str, str, str, list[str] | None]]] = {
    "calls": [("hs_call_title", "Call Title", "string", "text", None),
              ("hs_call_body", "Call notes", "string", "textarea", None),
              ("hs_call_direction", "Call direction", "enumeration", "select", ["INBOUND", "OUTBOUND"]),
              ("hs_call_duration", "Call duration", "number", "number", None),
              ("hs_call_status", "Call status", "enumeration", "select",
               ["BUSY", "CALLING_CRM_USER", "CANCELED", "COMPLETED", "CONNECTING", "FAILED", "IN_PROGRESS",
                "NO_ANSWER", "QUEUED", "RINGING"])],
    "emails": [("hs_email_subject", "Email subject", "string", "text", None),
               ("hs_email_text", "Email body", "string", "textarea", None),
               ("hs_email_direction", "Email direction", "enumeration", "select",
                ["EMAIL", "INCOMING_EMAIL", "FORWARDED_EMAIL"]),
               ("hs_email_status", "Email send status", "enumeration", "select",
                ["BOUNCED", "FAILED", "SCHEDULED", "SENDING", "SENT"])],
    "meetings": [("hs_meeting_title", "Meeting name", "string", "text", None),
                 ("hs_meeting_body", "Meeting description", "string", "textarea", None),
                 ("hs_meeting_start_time", "Start time", "datetime", "date", None),
                 ("hs_meeting_end_time", "End time", "datetime", "date", None),
                 ("hs_meeting_outcome", "Meeting outcome", "enumeration", "select",
                  ["SCHEDULED", "COMPLETED", "RESCHEDULED", "NO_SHOW", "CANCELED"])],
    "notes": [("hs_note_body", "Note body", "string", "textarea", None)],
    "tasks": [("hs_task_subject", "Task title", "string", "text", None),
              ("hs_task_body", "Task notes", "string", "textarea", None),
              ("hs_task_status", "Task status", "enumeration", "select",
               ["NOT_STARTED", "COMPLETED", "IN_PROGRESS", "WAITING", "DEFERRED"]),
              ("hs_task_type", "Task type", "enumeration", "select", ["TODO", "CALL", "EMAIL"]),
              ("hs_task_priority", "Priority", "enumeration", "select", ["NONE", "LOW", "MEDIUM", "HIGH"])],
}

LIFECYCLE_STAGES = [
    "subscriber",
    "lead",
    "marketingqualifiedlead",
    "salesqualifiedlead",
    "opportunity",
    "customer",
    "evangelist",
    "other",
]

# HubSpot's default sales pipeline: (id, label, probability, closed).
DEAL_STAGES = [
    ("appointmentscheduled", "Appointment Scheduled", "0.2", "false"),
    ("qualifiedtobuy", "Qualified To Buy", "0.4", "false"),
    ("presentationscheduled", "Presentation Scheduled", "0.6", "false"),
    ("decisionmakerboughtin", "Decision Maker Bought-In", "0.8", "false"),
    ("contractsent", "Contract Sent", "0.9", "false"),
    ("closedwon", "Closed Won", "1.0", "true"),
    ("closedlost", "Closed Lost", "0.0", "true"),
]


# The fieldTypes each property type accepts (HubSpot's properties guide, "Property type and fieldType values").
HS_FIELD_TYPES_OF = {
    "bool": ("booleancheckbox",),
    "enumeration": ("booleancheckbox", "checkbox", "radio", "select", "calculation_equation"),
    "date": ("date",),
    "datetime": ("date",),
    "string": ("file", "text", "textarea", "calculation_equation", "html", "phonenumber"),
    "number": ("number", "calculation_equation"),
}

# HubSpot stamps its own properties with the portal's creation; the sandbox uses one fixed date.
HS_BUILTIN_STAMP = "2019-08-06T02:41:52.230Z"


def _hs_prop(name: str, label: str, type_: str, field_type: str, group: str, options: list[str] | None = None,
             read_only: bool = False) -> dict[str, Any]:
    return {
        "updatedAt": HS_BUILTIN_STAMP,
        "createdAt": HS_BUILTIN_STAMP,
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "groupName": group,
        "description": "",
        "options": [
            {"label": o, "value": o, "hidden": False, "displayOrder": i, "description": ""} for i, o in enumerate(options or [])
        ],
        "displayOrder": -1,
        "calculated": False,
        "externalOptions": False,
        "hasUniqueValue": name in ("email", "hs_object_id"),
        "hidden": False,
        "hubspotDefined": True,
        "formField": False,
        "modificationMetadata": {"archivable": False, "readOnlyDefinition": True, "readOnlyValue": read_only},
        "archived": False,
    }


def hubspot_builtin_properties() -> dict[str, dict[str, dict[str, Any]]]:
    """Return HubSpot's built-in properties per object type, as the properties API shows them."""
    common = [
        ("hs_object_id", "Record ID", "number", "number", True),
        ("createdate", "Create Date", "datetime", "date", True),
    ]
    contacts = common + [
        ("lastmodifieddate", "Last Modified Date", "datetime", "date", True),
        ("email", "Email", "string", "text", False),
        ("firstname", "First Name", "string", "text", False),
        ("lastname", "Last Name", "string", "text", False),
        ("jobtitle", "Job Title", "string", "text", False),
        ("company", "Company Name", "string", "text", False),
        ("country", "Country/Region", "string", "text", False),
        ("phone", "Phone Number", "string", "text", False),
        ("hs_analytics_source", "Original Source", "string", "text", False),
    ]
    companies = common + [
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", True),
        ("name", "Company name", "string", "text", False),
        ("domain", "Company Domain Name", "string", "text", False),
        ("industry", "Industry", "string", "text", False),
        ("numberofemployees", "Number of Employees", "number", "number", False),
        ("country", "Country/Region", "string", "text", False),
        ("annualrevenue", "Annual Revenue", "number", "number", False),
    ]
    deals = common + [
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", True),
        ("dealname", "Deal Name", "string", "text", False),
        ("pipeline", "Pipeline", "enumeration", "select", False),
        ("amount", "Amount", "number", "number", False),
        ("closedate", "Close Date", "datetime", "date", False),
        ("hs_is_closed_won", "Is Closed Won", "bool", "booleancheckbox", True),
        ("hs_is_closed", "Is Deal Closed?", "bool", "booleancheckbox", True),
    ]
    group = {"contacts": "contactinformation", "companies": "companyinformation", "deals": "dealinformation",
             **{t: f"{HS_SINGULAR[t]}information" for t in HS_ENGAGEMENT_TYPES}}
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for otype, props in (("contacts", contacts), ("companies", companies), ("deals", deals)):
        out[otype] = {n: _hs_prop(n, lbl, t, ft, group[otype], read_only=ro) for n, lbl, t, ft, ro in props}
    activity_common = [
        ("hs_object_id", "Record ID", "number", "number", True),
        ("hs_createdate", "Created at", "datetime", "date", True),
        ("hs_lastmodifieddate", "Last Modified Date", "datetime", "date", True),
        ("hs_timestamp", "Activity date", "datetime", "date", False),
        # Who created the activity: the user behind the UI, or the private app's user for an API call.
        ("hs_created_by_user_id", "Created by user ID", "number", "number", True),
        ("hs_object_source", "Record source", "string", "text", True),
    ]
    for otype in HS_ENGAGEMENT_TYPES:
        out[otype] = {n: _hs_prop(n, lbl, t, ft, group[otype], read_only=ro) for n, lbl, t, ft, ro in activity_common}
        for name, label, type_, field_type, options in HS_ENGAGEMENT_PROPERTIES[otype]:
            out[otype][name] = _hs_prop(name, label, type_, field_type, group[otype], options)
    out["contacts"]["hs_lead_status"] = _hs_prop("hs_lead_status", "Lead Status", "enumeration", "radio",
                                                 "contactinformation", LEAD_STATUSES)
    out["deals"]["pipeline"]["options"] = [{"label": "Sales Pipeline", "value": "default", "hidden": False,
                                            "displayOrder": 0, "description": ""}]
    out["contacts"]["lifecyclestage"] = _hs_prop(
        "lifecyclestage", "Lifecycle Stage", "enumeration", "radio", "contactinformation", LIFECYCLE_STAGES
    )
    # The owner is an enumeration whose options are the account's users (externalOptions), naming an OWNER.
    for otype in ("contacts", "companies", "deals", *HS_ENGAGEMENT_TYPES):
        owner = _hs_prop("hubspot_owner_id", f"{HS_SINGULAR[otype].title()} owner", "enumeration", "select",
                         group[otype])
        owner.update({"externalOptions": True, "referencedObjectType": "OWNER"})
        out[otype]["hubspot_owner_id"] = owner
    out["companies"]["lifecyclestage"] = _hs_prop(
        "lifecyclestage", "Lifecycle Stage", "enumeration", "radio", "companyinformation", LIFECYCLE_STAGES
    )
    out["deals"]["dealstage"] = _hs_prop(
        "dealstage", "Deal Stage", "enumeration", "radio", "dealinformation", [s[0] for s in DEAL_STAGES]
    )
    return out


def hubspot_builtin_groups() -> dict[str, dict[str, dict[str, Any]]]:
    """Return HubSpot's built-in property groups per object type."""
    names = {"contacts": "contactinformation", "companies": "companyinformation", "deals": "dealinformation",
             **{t: f"{HS_SINGULAR[t]}information" for t in HS_ENGAGEMENT_TYPES}}
    return {
        t: {n: {"name": n, "label": n.replace("information", " information").title(), "displayOrder": 0, "archived": False}}
        for t, n in names.items()
    }


def _sf_field(name: str, type_: str, label: str, *, updateable: bool = True, nillable: bool = True,
              length: int = 0, reference_to: list[str] | None = None, relationship: str | None = None,
              precision: int = 0, scale: int = 0, custom: bool = False) -> dict[str, Any]:
    soap = {"id": "tns:ID", "reference": "tns:ID", "double": "xsd:double", "int": "xsd:int", "boolean": "xsd:boolean",
            "date": "xsd:date", "datetime": "xsd:dateTime", "currency": "xsd:double", "percent": "xsd:double",
            "anyType": "xsd:anyType"}
    return {
        "name": name,
        "type": type_,
        "label": label,
        "updateable": updateable,
        "createable": updateable,
        "nillable": nillable,
        "custom": custom,
        "length": length,
        "precision": precision,
        "scale": scale,
        "referenceTo": reference_to or [],
        "relationshipName": relationship,
        "soapType": soap.get(type_, "xsd:string"),
        "picklistValues": [],
        "restrictedPicklist": False,
        "calculated": False,
        "calculatedFormula": None,
        "autoNumber": False,
        "unique": False,
        "externalId": False,
        "idLookup": type_ in ("id", "email") or name == "Name",
        "nameField": name == "Name",
        "defaultedOnCreate": False,
        "filterable": type_ != "textarea",
        "sortable": type_ != "textarea",
    }


def sf_picklist_values(values: list[str], default: str | None = None) -> list[dict[str, Any]]:
    """Picklist entries as describe shows them."""
    return [{"active": True, "defaultValue": v == default, "label": v, "validFor": None, "value": v} for v in values]


# Standard picklists of a new org (Setup shows the same values); none is restricted, as in Salesforce.
SF_PICKLISTS = {
    "Industry": ["Agriculture", "Apparel", "Banking", "Biotechnology", "Chemicals", "Communications", "Construction",
                 "Consulting", "Education", "Electronics", "Energy", "Engineering", "Entertainment", "Environmental",
                 "Finance", "Food & Beverage", "Government", "Healthcare", "Hospitality", "Insurance", "Machinery",
                 "Manufacturing", "Media", "Not For Profit", "Other", "Recreation", "Retail", "Shipping",
                 "Technology", "Telecommunications", "Transportation", "Utilities"],
    "LeadSource": ["Web", "Phone Inquiry", "Partner Referral", "Purchased List", "Other"],
    "Status": ["Open - Not Contacted", "Working - Contacted", "Closed - Converted", "Closed - Not Converted"],
    "StageName": ["Prospecting", "Qualification", "Needs Analysis", "Value Proposition", "Id. Decision Makers",
                  "Perception Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won", "Closed Lost"],
}


def _sf_record_fields() -> list[dict[str, Any]]:
    """The fields every record has: its Id and the platform's timestamps."""
    return [
        _sf_field("Id", "id", "Record ID", updateable=False, nillable=False, length=18),
        _sf_field("CreatedDate", "datetime", "Created Date", updateable=False, nillable=False),
        _sf_field("LastModifiedDate", "datetime", "Last Modified Date", updateable=False, nillable=False),
        _sf_field("SystemModstamp", "datetime", "System Modstamp", updateable=False, nillable=False),
    ]


def salesforce_builtin_fields() -> dict[str, dict[str, dict[str, Any]]]:
    """Return the standard fields of Lead, Contact, Account and Opportunity that leadbridge touches."""
    def audit() -> list[dict[str, Any]]:
        return [
            *_sf_record_fields(),
            _sf_field("OwnerId", "reference", "Owner ID", length=18, reference_to=["User"], relationship="Owner"),
        ]

    lead = audit() + [
        _sf_field("FirstName", "string", "First Name", length=40),
        _sf_field("LastName", "string", "Last Name", length=80, nillable=False),
        _sf_field("Name", "string", "Full Name", updateable=False, length=121),
        _sf_field("Email", "email", "Email", length=80),
        _sf_field("Title", "string", "Title", length=128),
        _sf_field("Company", "string", "Company", length=255, nillable=False),
        _sf_field("Industry", "picklist", "Industry", length=255),
        _sf_field("NumberOfEmployees", "int", "Employees", precision=8),
        _sf_field("Country", "string", "Country", length=80),
        _sf_field("Website", "url", "Website", length=255),
        _sf_field("LeadSource", "picklist", "Lead Source", length=255),
        _sf_field("Status", "picklist", "Status", length=255, nillable=False),
        _sf_field("IsConverted", "boolean", "Converted", updateable=False, nillable=False),
        _sf_field("ConvertedDate", "date", "Converted Date", updateable=False),
        _sf_field("ConvertedAccountId", "reference", "Converted Account ID", updateable=False, length=18,
                  reference_to=["Account"], relationship="ConvertedAccount"),
        _sf_field("ConvertedContactId", "reference", "Converted Contact ID", updateable=False, length=18,
                  reference_to=["Contact"], relationship="ConvertedContact"),
        _sf_field("ConvertedOpportunityId", "reference", "Converted Opportunity ID", updateable=False, length=18,
                  reference_to=["Opportunity"], relationship="ConvertedOpportunity"),
    ]
    contact = audit() + [
        _sf_field("FirstName", "string", "First Name", length=40),
        _sf_field("LastName", "string", "Last Name", length=80, nillable=False),
        _sf_field("Name", "string", "Full Name", updateable=False, length=121),
        _sf_field("Email", "email", "Email", length=80),
        _sf_field("Title", "string", "Title", length=128),
        _sf_field("MailingCountry", "string", "Mailing Country", length=80),
        _sf_field("AccountId", "reference", "Account ID", length=18, reference_to=["Account"], relationship="Account"),
        _sf_field("LeadSource", "picklist", "Lead Source", length=255),
    ]
    account = audit() + [
        _sf_field("Name", "string", "Account Name", length=255, nillable=False),
        _sf_field("Website", "url", "Website", length=255),
        _sf_field("Industry", "picklist", "Industry", length=255),
        _sf_field("NumberOfEmployees", "int", "Employees", precision=8),
        _sf_field("BillingCountry", "string", "Billing Country", length=80),
        _sf_field("AnnualRevenue", "currency", "Annual Revenue", precision=18),
    ]
    opportunity = audit() + [
        _sf_field("Name", "string", "Name", length=120, nillable=False),
        _sf_field("AccountId", "reference", "Account ID", length=18, reference_to=["Account"], relationship="Account"),
        _sf_field("ContactId", "reference", "Contact ID", length=18, reference_to=["Contact"], relationship="Contact"),
        _sf_field("StageName", "picklist", "Stage", length=255, nillable=False),
        _sf_field("Amount", "currency", "Amount", precision=18, scale=2),
        _sf_field("CloseDate", "date", "Close Date", nillable=False),
        _sf_field("IsClosed", "boolean", "Closed", updateable=False, nillable=False),
        _sf_field("IsWon", "boolean", "Won", updateable=False, nillable=False),
    ]
    user = [
        _sf_field("Id", "id", "User ID", updateable=False, nillable=False, length=18),
        _sf_field("Name", "string", "Full Name", updateable=False, length=121),
        _sf_field("Email", "email", "Email", length=128),
        _sf_field("Username", "string", "Username", length=80),
        # A deactivated user keeps its records but can own no new ones (INACTIVE_OWNER_OR_USER).
        _sf_field("IsActive", "boolean", "Active", nillable=False),
    ]
    # A Lead can be owned by a queue (a Group of Type Queue that lists Lead among its QueueSobjects); a Contact
    # cannot (Salesforce's describe: Lead.OwnerId references Group and User, Contact.OwnerId User only).
    for fdef in lead:
        if fdef["name"] == "OwnerId":
            fdef["referenceTo"] = ["Group", "User"]
    for fdef in lead:
        if fdef["name"] == "Status":
            fdef["defaultedOnCreate"] = True  # "Open - Not Contacted" unless given
    for fdef in lead + contact + account + opportunity:
        if fdef["type"] == "picklist":
            values = SF_PICKLISTS[fdef["name"]]
            fdef["picklistValues"] = sf_picklist_values(
                values, "Open - Not Contacted" if fdef["name"] == "Status" else None)
    out = {
        name: {f["name"]: f for f in fields}
        for name, fields in (("Lead", lead), ("Contact", contact), ("Account", account), ("Opportunity", opportunity),
                             ("User", user), *sf_activity_objects().items())
    }
    for history, parent in SF_HISTORY_OBJECTS.items():
        out[history] = {f["name"]: f for f in sf_history_fields(parent)}
    return out


def _picklist(name: str, label: str, values: list[str], default: str | None = None, **kw: Any) -> dict[str, Any]:
    fdef = _sf_field(name, "picklist", label, length=255, **kw)
    fdef["picklistValues"] = sf_picklist_values(values, default)
    fdef["defaultedOnCreate"] = default is not None
    return fdef


def _created_by() -> dict[str, Any]:
    # Set by the platform (an insert cannot name it without the "Set Audit Fields" permission).
    return _sf_field("CreatedById", "reference", "Created By ID", updateable=False, nillable=False, length=18,
                     reference_to=["User"], relationship="CreatedBy")


# Activity objects, the opportunity's stage history and contact roles: (sObject, key prefix) -> fields.
SF_TASK_STATUSES = ["Not Started", "In Progress", "Completed", "Waiting on someone else", "Deferred"]
SF_CLOSED_TASK_STATUSES = ("Completed",)
SF_OPPORTUNITY_HISTORY_FIELDS = ("StageName", "Amount", "CloseDate")  # a change of any writes a row


def sf_activity_objects() -> dict[str, list[dict[str, Any]]]:
    """Task, Event, OpportunityHistory and OpportunityContactRole, with the fields leadbridge reads."""
    def common() -> list[dict[str, Any]]:
        return [*_sf_record_fields(), _created_by()]

    def activity() -> list[dict[str, Any]]:
        return common() + [
            _sf_field("OwnerId", "reference", "Assigned To ID", length=18, reference_to=["User"], relationship="Owner"),
            # Who is polymorphic: a Contact or a Lead; What is what it is about (an Account, an Opportunity).
            _sf_field("WhoId", "reference", "Name ID", length=18, reference_to=["Contact", "Lead"], relationship="Who"),
            _sf_field("WhatId", "reference", "Related To ID", length=18, reference_to=["Account", "Opportunity"],
                      relationship="What"),
            _sf_field("Subject", "string", "Subject", length=255),
            _sf_field("Description", "textarea", "Description", length=32000),
            _picklist("Type", "Type", ["Call", "Email", "Meeting", "Other"]),
        ]

    task = activity() + [
        _sf_field("ActivityDate", "date", "Due Date Only"),
        _picklist("Status", "Status", SF_TASK_STATUSES, "Not Started", nillable=False),
        _picklist("Priority", "Priority", ["High", "Normal", "Low"], "Normal", nillable=False),
        _picklist("TaskSubtype", "Task Subtype", ["Task", "Email", "ListEmail", "Cadence", "Call", "LinkedIn"], "Task"),
        _picklist("CallType", "Call Type", ["Internal", "Inbound", "Outbound"]),
        _sf_field("IsClosed", "boolean", "Closed", updateable=False, nillable=False),
        _sf_field("CompletedDateTime", "datetime", "Completed Date/Time", updateable=False),
    ]
    event = activity() + [
        _sf_field("ActivityDateTime", "datetime", "Due Date Time", nillable=False),
        _sf_field("ActivityDate", "date", "Due Date Only", updateable=False),
        _sf_field("DurationInMinutes", "int", "Duration", precision=8),
        _picklist("EventSubtype", "Event Subtype", ["Event"], "Event"),
    ]
    history = [
        _sf_field("Id", "id", "Opportunity History ID", updateable=False, nillable=False, length=18),
        _sf_field("OpportunityId", "reference", "Opportunity ID", updateable=False, nillable=False, length=18,
                  reference_to=["Opportunity"], relationship="Opportunity"),
        _created_by(),
        _sf_field("CreatedDate", "datetime", "Created Date", updateable=False, nillable=False),
        _sf_field("SystemModstamp", "datetime", "System Modstamp", updateable=False, nillable=False),
        _sf_field("IsDeleted", "boolean", "Deleted", updateable=False, nillable=False),
        _picklist("StageName", "Stage Name", SF_PICKLISTS["StageName"], updateable=False, nillable=False),
        _sf_field("Amount", "currency", "Amount", updateable=False, precision=18, scale=2),
        _sf_field("CloseDate", "date", "Close Date", updateable=False),
    ]
    role = common() + [
        _sf_field("OpportunityId", "reference", "Opportunity ID", nillable=False, length=18,
                  reference_to=["Opportunity"], relationship="Opportunity"),
        _sf_field("ContactId", "reference", "Contact ID", nillable=False, length=18, reference_to=["Contact"],
                  relationship="Contact"),
        _picklist("Role", "Role", ["Business User", "Decision Maker", "Economic Buyer", "Economic Decision Maker",
                                   "Evaluator", "Executive Sponsor", "Influencer", "Technical Buyer", "Other"]),
        _sf_field("IsPrimary", "boolean", "Primary"),
    ]
    return {"Task": task, "Event": event, "OpportunityHistory": history, "OpportunityContactRole": role,
            **sf_routing_objects()}


def sf_routing_objects() -> dict[str, list[dict[str, Any]]]:
    """Group (queues), QueueSobject, Campaign and CampaignMember: where rule actions route and enrol leads."""
    group = [
        *_sf_record_fields(),
        _sf_field("Name", "string", "Name", length=40, nillable=False),
        _sf_field("DeveloperName", "string", "Developer Name", length=80),
        _picklist("Type", "Type", ["Regular", "Role", "Queue", "Organization"], nillable=False),
        _sf_field("Email", "email", "Email", length=255),
    ]
    queue_sobject = [
        _sf_field("Id", "id", "Queue Sobject ID", updateable=False, nillable=False, length=18),
        _sf_field("QueueId", "reference", "Group ID", nillable=False, length=18, reference_to=["Group"],
                  relationship="Queue"),
        _sf_field("SobjectType", "string", "Sobject Type", length=40, nillable=False),
        _sf_field("SystemModstamp", "datetime", "System Modstamp", updateable=False, nillable=False),
    ]
    campaign = [
        *_sf_record_fields(), _created_by(),
        _sf_field("OwnerId", "reference", "Owner ID", length=18, reference_to=["User"], relationship="Owner"),
        _sf_field("Name", "string", "Name", length=80, nillable=False),
        _sf_field("IsActive", "boolean", "Active", nillable=False),
        _picklist("Status", "Status", ["Planned", "In Progress", "Completed", "Aborted"], "Planned"),
        _picklist("Type", "Type", ["Conference", "Webinar", "Email", "Advertisement", "Other"]),
    ]
    member = [
        *_sf_record_fields(), _created_by(),
        _sf_field("CampaignId", "reference", "Campaign ID", nillable=False, length=18, reference_to=["Campaign"],
                  relationship="Campaign"),
        _sf_field("LeadId", "reference", "Lead ID", length=18, reference_to=["Lead"], relationship="Lead"),
        _sf_field("ContactId", "reference", "Contact ID", length=18, reference_to=["Contact"], relationship="Contact"),
        # A campaign's member statuses are its own picklist (CampaignMemberStatus); Sent and Responded always exist.
        _sf_field("Status", "string", "Status", length=40),
        _sf_field("HasResponded", "boolean", "Responded", updateable=False, nillable=False),
    ]
    return {"Group": group, "QueueSobject": queue_sobject, "Campaign": campaign, "CampaignMember": member}


# Objects only the platform writes (History rows record changes; REST insert/update is refused).
SF_READ_ONLY_OBJECTS = ("LeadHistory", "ContactHistory", "OpportunityHistory")

# Field History Tracking: each tracked object's History object (StandardObjectNameHistory), keyed by its name.
SF_HISTORY_OBJECTS = {"LeadHistory": "Lead", "ContactHistory": "Contact"}
SF_HISTORY_MAX_TRACKED = 20  # fields one object can track (Setup refuses more without Field Audit Trail)
SF_HISTORY_VALUE_LENGTH = 255  # OldValue/NewValue are anyType of length 255
# Field values of History rows that are not field names: the record's creation (more exist in Salesforce, such as
# leadConverted, ownerAccepted; the sandbox writes only `created`).
SF_HISTORY_CREATED = "created"
# History DataType picklist values by describe type (what Salesforce records for the changed field).
SF_HISTORY_DATA_TYPES = {"string": "Text", "textarea": "TextArea", "email": "Email", "url": "Url", "phone": "Phone",
                         "picklist": "DynamicEnum", "double": "Double", "int": "Double", "currency": "Currency",
                         "percent": "Percent", "boolean": "Boolean", "date": "Date", "datetime": "DateTime",
                         "reference": "EntityId"}


def sf_history_fields(parent: str) -> list[dict[str, Any]]:
    """The fields of `parent`'s History object (LeadHistory: Id, LeadId, Field, DataType, OldValue, NewValue, ...).

    The `Field` picklist lists `created` and the fields being tracked (what Setup's Field History Tracking page
    sets), so describe shows which fields have history.
    """
    field = _sf_field("Field", "picklist", "Changed Field", updateable=False, nillable=False, length=255)
    field.update({"restrictedPicklist": True, "picklistValues": sf_picklist_values([SF_HISTORY_CREATED])})
    data_type = _sf_field("DataType", "picklist", "Data Type", updateable=False, length=40)
    data_type.update({"restrictedPicklist": True,
                      "picklistValues": sf_picklist_values(sorted(set(SF_HISTORY_DATA_TYPES.values())))})
    fields = [
        _sf_field("Id", "id", f"{parent} History ID", updateable=False, nillable=False, length=18),
        _sf_field(f"{parent}Id", "reference", f"{parent} ID", updateable=False, nillable=False, length=18,
                  reference_to=[parent], relationship=parent),
        _sf_field("CreatedById", "reference", "Created By ID", updateable=False, nillable=False, length=18,
                  reference_to=["User"], relationship="CreatedBy"),
        _sf_field("CreatedDate", "datetime", "Created Date", updateable=False, nillable=False),
        _sf_field("IsDeleted", "boolean", "Deleted", updateable=False, nillable=False),
        field,
        data_type,
        _sf_field("OldValue", "anyType", "Old Value", updateable=False, length=SF_HISTORY_VALUE_LENGTH),
        _sf_field("NewValue", "anyType", "New Value", updateable=False, length=SF_HISTORY_VALUE_LENGTH),
    ]
    for fdef in fields:
        if fdef["name"] in ("OldValue", "NewValue"):
            fdef["filterable"] = False  # anyType: Salesforce lets one sort by it, not filter on it
    return fields


SF_LABELS = {"Lead": ("Lead", "Leads"), "Contact": ("Contact", "Contacts"), "Account": ("Account", "Accounts"),
             "Opportunity": ("Opportunity", "Opportunities"), "User": ("User", "Users"),
             "LeadHistory": ("Lead History", "Lead History"), "ContactHistory": ("Contact History", "Contact History"),
             "Task": ("Task", "Tasks"), "Event": ("Event", "Events"),
             "OpportunityHistory": ("Opportunity History", "Opportunity History"),
             "OpportunityContactRole": ("Opportunity Contact Role", "Opportunity Contact Role"),
             "Group": ("Group", "Groups"), "QueueSobject": ("Queue Sobject", "Queue Sobjects"),
             "Campaign": ("Campaign", "Campaigns"), "CampaignMember": ("Campaign Member", "Campaign Members")}
