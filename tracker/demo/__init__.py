"""Demo traffic for a running platform: journeys built from real user agents, and a report.

`agents` loads browser and crawler user agents from public packages, `journeys` plans and
sends click, landing beacon and postback journeys, and `report` reads the platform's answers
back through the API and compares them with what was sent.
"""
