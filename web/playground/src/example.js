// The document the Playground opens with: one pull, one push and one
// stream of work orders (docs/sync-protocol.md).
export function exampleDocument(tokenWithheld) {
  const auth = tokenWithheld
    ? `# The dev token is only filled in for requests from this machine: paste a
# token into Headers below: {"Authorization": "Bearer <token>"}.`
    : `# Headers (below) carry the token: the dev token in dev mode, or paste yours:
# {"Authorization": "Bearer <token>"}.`;
  return `# Welcome to Tidemark. Pick an operation with the run button.
${auth}
#
# Pull: changes after a checkpoint (null: from the start); pass the
# returned checkpoint back to read the next page.
# Push: writes documents; returns the server's version of any row not
# written exactly as sent (a conflict).
# Stream: runs over a websocket and shows every change as it commits. Start
# it, then push from another window or client and watch the event arrive.

query Pull {
  pullWorkOrders(checkpoint: null, limit: 10) {
    documents { id title status priority assigneeId updatedAt deleted }
    checkpoint { cursor }
  }
}

mutation Push {
  pushWorkOrders(rows: [{
    assumedMasterState: null
    newDocumentState: {
      id: "wo-playground-1", siteId: "site-playground-1",
      title: "Replace the pump seal", status: OPEN, priority: 2, deleted: false
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
