# Documents as an AuthZEN policy enforcement point asks about them
# (POST /access/v1/evaluation): the subject is a user (actor kind human),
# known in data.users with a role; the resource is a document (surface
# "document", target.id, and target.owner when the PEP sends it); the
# actions are can_read (or read), can_edit and can_delete. The same meaning
# as ../authzen-cedar (both pass the same cases).
package tollgate.authzen

import rego.v1

default decision := "silence"

user := data.users[input.actor.id]

known_action if input.action in {"can_read", "read", "can_edit", "can_delete"}

reads if input.action in {"can_read", "read"}

owns if input.target.owner == input.actor.id

confidential if input.target.id in data.confidential

# Anyone known reads what is not confidential, and what they own.
allowed if {
	reads
	not confidential
}

allowed if {
	reads
	owns
}

# Editors edit their own documents; admins do everything.
allowed if {
	input.action == "can_edit"
	user.role == "editor"
	owns
}

allowed if user.role == "admin"

# A known user asking a known action on a document is answered: permit or
# deny. Anything else (an unknown user, surface or action) is silence.
asked if {
	input.surface == "document"
	user
	known_action
}

decision := "permit" if {
	asked
	allowed
}

decision := "deny" if {
	asked
	not allowed
}
