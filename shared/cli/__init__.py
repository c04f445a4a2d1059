"""The operators' command line: `python -m shared.cli --help`.

It talks to a running bundle over its management API (`--url`, key from `MANAGE_API_KEY`) and, for
`replay-poison`, to the storage queues (`AzureWebJobsStorage`). It never imports the Functions
runtime, so it runs anywhere the dev requirements are installed; it is not deployed.
"""
