"""The bundle's flows (install, inbound, outbound, work items, lifecycle, migration), built on core and adapters.

Each flow receives its collaborators (store, Azure DevOps client factory, queue sender, clock) from
the composition root, `shared.compose`.
"""
