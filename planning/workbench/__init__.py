"""The planners' workbench: server-rendered pages and the JSON API of the proposal lifecycle."""
