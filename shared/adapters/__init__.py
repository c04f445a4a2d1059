"""I/O adapters: Azure Table and Queue storage, the Azure DevOps REST client and its credentials."""
