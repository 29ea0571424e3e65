"""The command line: typer commands over charlm.api; stdout is data, stderr is for people."""
