// The connection_init shapes other guides and clients use, besides the
// {"Authorization": "Bearer …"} of docs/clients.md: Apollo's documented
// { authToken } and a bare token without "Bearer".
import { test } from 'node:test';
import { ApolloClient, ApolloLink, HttpLink, InMemoryCache } from '@apollo/client';
import { GraphQLWsLink } from '@apollo/client/link/subscriptions';
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

import * as apollo from '../apollo.mjs';
import { exercise, tokenFor, url, wsUrl } from './helpers.mjs';

for (const [name, params] of [
  ["Apollo's connectionParams { authToken } shape", (token) => ({ authToken: token })],
  ['a bare token in connectionParams { Authorization }', (token) => ({ Authorization: token })],
]) {
  test(`${name}: a stream event after a push`, async (t) => {
    const token = tokenFor(name.startsWith('Apollo') ? 'apollo-auth-token' : 'bare-token');
    const wsClient = createClient({ url: wsUrl, webSocketImpl: WebSocket, connectionParams: params(token) });
    const link = ApolloLink.split(
      (operation) => operation.operationType === 'subscription',
      new GraphQLWsLink(wsClient),
      new HttpLink({ uri: url, headers: { Authorization: `Bearer ${token}` } }),
    );
    const client = new ApolloClient({ link, cache: new InMemoryCache() });
    t.after(() => {
      client.stop();
      return wsClient.dispose();
    });
    await exercise(t, { client, wsClient, ...apollo });
  });
}
