import { createClient } from 'graphql-ws';
import { getOperationAST, parse } from 'graphql';

// createTidemarkFetcher returns a GraphiQL fetcher. Queries and mutations
// go out as HTTP POSTs, subscriptions always over graphql-ws (the
// graphql-transport-ws subprotocol), never as a POST, which the server
// would not stream.
//
// Headers: GraphiQL passes the Headers editor's content with each
// operation, but not with its first schema fetch (the editor does not exist
// yet), which would then go out without a token. The fetcher keeps the
// headers it last saw, starting with the ones the server filled in, and
// uses them whenever GraphiQL passes none.
//
// The websocket authenticates in connection_init with
// {"Authorization": "Bearer …"}; when the headers change (a token pasted
// into the editor) the next subscription opens a new connection with them.
export function createTidemarkFetcher({ url, wsUrl, initialHeaders = {} }) {
  let headers = initialHeaders;
  let ws = null; // { key, client }

  function websocket() {
    const key = JSON.stringify(headers);
    if (ws && ws.key === key) return ws.client;
    if (ws) ws.client.dispose();
    const params = connectionParams(headers);
    const client = createClient({
      url: wsUrl,
      connectionParams: params,
      lazy: true,
      retryAttempts: 0,
    });
    ws = { key, client };
    return client;
  }

  return function fetcher(params, opts) {
    if (opts && opts.headers) headers = opts.headers;
    if (isSubscription(params, opts)) {
      const client = websocket();
      return {
        subscribe(observer) {
          const dispose = client.subscribe(params, {
            next: (value) => observer.next(value),
            error: (err) => observer.error(describe(err)),
            complete: () => observer.complete(),
          });
          return { unsubscribe: dispose };
        },
      };
    }
    return post(url, params, headers);
  };
}

async function post(url, params, headers) {
  const res = await fetch(url, {
    method: 'POST',
    headers: {
      ...stringValues(headers),
      'Content-Type': 'application/json',
      Accept: 'application/graphql-response+json, application/json',
    },
    body: JSON.stringify(params),
  });
  const text = await res.text();
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${res.status} ${res.statusText}: ${text.slice(0, 500)}`);
  }
}

function isSubscription(params, opts) {
  let doc = opts && opts.documentAST;
  if (!doc) {
    try {
      doc = parse(params.query);
    } catch {
      return false; // the server answers the syntax error
    }
  }
  const op = getOperationAST(doc, params.operationName || undefined);
  return op != null && op.operation === 'subscription';
}

// connectionParams puts the Authorization header (whatever its case in the
// editor) under "Authorization", as Tidemark reads it in connection_init.
function connectionParams(headers) {
  const out = {};
  for (const [name, value] of Object.entries(stringValues(headers))) {
    out[name.toLowerCase() === 'authorization' ? 'Authorization' : name] = value;
  }
  return out;
}

function stringValues(headers) {
  const out = {};
  for (const [name, value] of Object.entries(headers || {})) {
    if (value != null) out[name] = String(value);
  }
  return out;
}

// describe turns a websocket close event into an Error GraphiQL can show.
function describe(err) {
  if (err instanceof Error) return err;
  if (Array.isArray(err)) return new Error(err.map((e) => e.message).join('\n'));
  if (err && typeof err.code === 'number') {
    return new Error(`websocket closed: ${err.code} ${err.reason || ''}`.trim());
  }
  return new Error(String(err));
}
