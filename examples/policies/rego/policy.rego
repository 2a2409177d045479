# Example policy for agents moving money and changing systems.
# The same meaning as ../cedar/policy.cedar; tests prove both decide alike.
package tollgate.example

import rego.v1

default decision := "silence"

# Only actors listed in data.actors are known; unknown actors get silence.
actor := data.actors[input.actor.id]

# Change-sensitive surfaces get no permit during the freeze window.
# time.now_ns() is the gate's bound decision time.
frozen if {
	input.surface in data.freeze.surfaces
	now := time.now_ns()
	now >= time.parse_rfc3339_ns(data.freeze.start)
	now < time.parse_rfc3339_ns(data.freeze.end)
}

is_transfer if {
	input.surface == "payments"
	input.action == "transfer"
}

# Amounts must be JSON numbers (Rego orders every string above every number).
bad_amount if {
	is_transfer
	not is_number(input.target.amount)
}

over_threshold if {
	is_transfer
	is_number(input.target.amount)
	input.target.amount > data.limits.transfer_threshold
}

dual_control if input.context.dual_control_approved == true

deny_transfer if {
	actor
	over_threshold
	not dual_control
}

permitted if {
	actor.approved == true
	input.surface in actor.surfaces
	not frozen
	not bad_amount
	not deny_transfer
}

decision := "deny" if deny_transfer

decision := "permit" if permitted
