// Runs each client setup of docs/clients.md (e2e/clients/*.mjs) against a
// real Tidemark: a pull, a push, and a stream that receives the push.
import { test } from 'node:test';

import * as apollo from '../apollo.mjs';
import * as urql from '../urql.mjs';
import * as plain from '../graphql-ws.mjs';
import { exercise, tokenFor, url, wsUrl } from './helpers.mjs';

test('Apollo Client: pull, push and a stream event after the push', async (t) => {
  const { client, wsClient } = apollo.createTidemarkApollo({ url, wsUrl, token: tokenFor('apollo') });
  t.after(() => {
    client.stop();
    return wsClient.dispose();
  });
  await exercise(t, { client, wsClient, ...apollo });
});

test('urql: pull, push and a stream event after the push', async (t) => {
  const { client, wsClient } = urql.createTidemarkUrql({ url, wsUrl, token: tokenFor('urql') });
  t.after(() => wsClient.dispose());
  await exercise(t, { client, wsClient, ...urql });
});

test('graphql-ws: pull, push and a stream event after the push, all over one websocket', async (t) => {
  const wsClient = plain.createTidemarkSocket({ wsUrl, token: tokenFor('graphql-ws') });
  t.after(() => wsClient.dispose());
  await exercise(t, { client: wsClient, wsClient, ...plain });
});
