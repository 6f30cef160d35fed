// Tidemark's Playground: GraphiQL with a fetcher that sends queries and
// mutations over HTTP and subscriptions over graphql-ws, both with the
// headers of the Headers editor (or, before the editor exists, the headers
// the server filled in).
import { createElement } from 'react';
import { createRoot } from 'react-dom/client';
import { GraphiQL } from 'graphiql';
import 'graphiql/style.css';
import { createTidemarkFetcher } from './fetcher.js';
import { exampleDocument } from './example.js';

const config = JSON.parse(document.getElementById('tidemark-config').textContent || '{}');
const endpoint = config.endpoint || '/graphql';
const initialHeaders = config.headers || {};

const fetcher = createTidemarkFetcher({
  url: new URL(endpoint, window.location.href).href,
  wsUrl: websocketURL(endpoint),
  initialHeaders,
});

createRoot(document.getElementById('graphiql')).render(
  createElement(GraphiQL, {
    fetcher,
    defaultQuery: exampleDocument(config.tokenWithheld),
    initialHeaders: JSON.stringify(initialHeaders, null, 2),
    // The token stays out of localStorage.
    shouldPersistHeaders: false,
    defaultEditorToolsVisibility: 'headers',
  }),
);

function websocketURL(path) {
  const url = new URL(path, window.location.href);
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  return url.href;
}
