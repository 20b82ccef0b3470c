"""One module per outside system (HubSpot, Salesforce, Slack), the sandbox CRM and the traffic simulator."""
