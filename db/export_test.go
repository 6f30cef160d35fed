package db

import "github.com/tidemark/tidemark/collections"

// ByIDsStatement is the read of a push's documents by id, for plan tests.
func ByIDsStatement(c *collections.Collection) string { return statementsFor(c).byIDs }

// GenericPlansStatement is what a PostgreSQL write transaction sends first.
const GenericPlansStatement = stmtGenericPlans
