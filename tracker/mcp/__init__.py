"""The platform as MCP tools: a server that turns tool calls into platform API requests.

Install with the `mcp` extra and run `tracker mcp` (stdio) or `tracker mcp --http`.
"""
