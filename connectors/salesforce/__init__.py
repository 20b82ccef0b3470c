"""Salesforce: the client, webhook parser, field names, outcome rules, history and echo rules of one CRM."""
