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

# A transfer moves a positive amount: zero or less is no transfer (and would
# lower any quota counted over amounts).
bad_amount if {
	is_transfer
	is_number(input.target.amount)
	input.target.amount <= 0
}

# Above the ceiling a transfer is denied outright.
over_ceiling if {
	is_transfer
	is_number(input.target.amount)
	input.target.amount > data.limits.transfer_ceiling
}

# Above the threshold (up to the ceiling) a transfer needs a second person:
# one approval by a caller with the approve role, which the gate attaches
# as input.derived.approvals once given (never the agent's own word).
over_threshold if {
	is_transfer
	is_number(input.target.amount)
	input.target.amount > data.limits.transfer_threshold
}

approved_by_a_person if count(object.get(input.derived, "approvals", [])) >= 1

deny_transfer if {
	actor
	over_ceiling
}

needs_approval if {
	permitted_but_for_approval
	over_threshold
	not approved_by_a_person
}

permitted_but_for_approval if {
	actor.approved == true
	input.surface in actor.surfaces
	not frozen
	not bad_amount
	not deny_transfer
}

permitted if {
	permitted_but_for_approval
	not needs_approval
}

decision := "deny" if deny_transfer

decision := "approval" if needs_approval

decision := "permit" if permitted
