// The document the Playground opens with: one pull, one push and one
// stream of work orders (docs/sync-protocol.md).
export function exampleDocument(tokenWithheld) {
  const auth = tokenWithheld
    ? `# The dev token is only filled in on this machine:
# paste yours into Headers, then re-fetch the schema:
# {"Authorization": "Bearer <token>"}`
    : `# Headers (below) carry the token: the dev token in
# dev mode, or paste yours there:
# {"Authorization": "Bearer <token>"}`;
  return `# Tidemark: put the cursor in an operation, Ctrl-Enter.
${auth}
#
# Pull: changes after a checkpoint (null: from the
#   start); pass the checkpoint back for the next page.
# Push: writes documents; returns the server's version
#   of any row not written as sent (a conflict).
# Stream: a websocket subscription; start it, push from
#   another window or client, and the change arrives.

query Pull {
  pullWorkOrders(checkpoint: null, limit: 10) {
    documents { id title status priority updatedAt deleted }
    checkpoint { cursor }
  }
}

mutation Push {
  pushWorkOrders(rows: [{
    assumedMasterState: null
    newDocumentState: {
      id: "wo-playground-1"
      siteId: "site-playground-1"
      title: "Replace the pump seal"
      status: OPEN
      priority: 2
      deleted: false
    }
  }]) {
    id title status updatedAt
  }
}

subscription Stream {
  streamWorkOrders {
    documents { id title status updatedAt deleted }
    checkpoint { cursor }
  }
}
`;
}
