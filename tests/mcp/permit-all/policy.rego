package tollgate.permit_all

import rego.v1

# Conformance runs: every call the gateway is asked about is permitted.
decision := "permit"
