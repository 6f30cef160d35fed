// Apollo Client 4 for Tidemark: queries and mutations over HTTP with the
// bearer token, streams over graphql-ws.
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws'; // Node only: browsers have WebSocket built in

export function createTidemarkApollo({ url, wsUrl, token }) {
  const httpLink = new HttpLink({
    uri: url, // https://tidemark.example.com/graphql
    headers: { Authorization: `Bearer ${token}` },
  });
  const wsClient = createClient({
    url: wsUrl, // wss://tidemark.example.com/graphql
    webSocketImpl: WebSocket, // Node only
    connectionParams: { Authorization: `Bearer ${token}` },
  });
  const link = ApolloLink.split(
    (operation) => operation.operationType === 'subscription',
    new GraphQLWsLink(wsClient),
    httpLink,
  );
  const client = new ApolloClient({ link, cache: new InMemoryCache() });
  return { client, wsClient };
}

const WORK_ORDER_FIELDS = gql`
  fragment WorkOrderFields on WorkOrder {
    id siteId title description status priority assigneeId dueAt updatedAt deleted
  }
`;

// Pull: the changes after a checkpoint (null: from the start), a page at a time.
export async function pullWorkOrders(client, checkpoint, limit = 100) {
  const { data } = await client.query({
    query: gql`
      query Pull($checkpoint: CheckpointInput, $limit: Int!) {
        pullWorkOrders(checkpoint: $checkpoint, limit: $limit) {
          documents { ...WorkOrderFields }
          checkpoint { cursor }
        }
      }
      ${WORK_ORDER_FIELDS}
    `,
    variables: { checkpoint, limit },
    fetchPolicy: 'network-only', // a pull is never answered from the cache
  });
  return data.pullWorkOrders;
}

// Push: returns the server's version of every row it did not write as sent.
export async function pushWorkOrders(client, rows) {
  const { data } = await client.mutate({
    mutation: gql`
      mutation Push($rows: [WorkOrderPushRow!]!) {
        pushWorkOrders(rows: $rows) { ...WorkOrderFields }
      }
      ${WORK_ORDER_FIELDS}
    `,
    variables: { rows },
  });
  return data.pushWorkOrders;
}

// Stream: each event has a pull's shape; store its checkpoint.
export function streamWorkOrders(client, onEvent, onError) {
  const subscription = client
    .subscribe({
      query: gql`
        subscription Stream {
          streamWorkOrders {
            documents { ...WorkOrderFields }
            checkpoint { cursor }
          }
        }
        ${WORK_ORDER_FIELDS}
      `,
    })
    .subscribe({
      next: ({ data, error }) => (error ? onError(error) : onEvent(data.streamWorkOrders)),
      error: onError,
    });
  return () => subscription.unsubscribe();
}
