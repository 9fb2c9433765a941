"""Read-only views for a person at a terminal: column lineage and tenant SQL.

(Named `explore`, not `inspect`: a package named like the standard library's
`inspect` would shadow it whenever a module here runs as a script.)
"""
