# Tools of MCP servers behind `tollgate mcp` (surface = the server's name,
# action = the tool's name, target = its arguments, context.read_only /
# destructive / idempotent / open_world = the tool's annotations, context.tool
# = its exact name). Explicit allow, implicit deny: a tool not permitted here
# is SILENCE.
package tollgate.mcp

import rego.v1

default decision := "silence"

decision := "deny" if {
	denied
} else := "permit" if {
	permitted
}

# Never: tools that reveal the server's environment or destroy things.
denied if input.action in data.mcp.never

denied if input.context.destructive == true

# Read-only tools of the servers this deployment knows.
permitted if {
	input.surface in data.mcp.servers
	input.context.read_only == true
}

# Tools named one by one, read-only or not.
permitted if input.action in object.get(data.mcp.allowed, input.surface, [])
