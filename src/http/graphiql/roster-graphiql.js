// Roster's GraphiQL page: the token pasted at the top is kept in this browser
// (localStorage) and sent as `Authorization: Bearer …` on every request, and in
// `connection_init` of the subscriptions' WebSocket (/graphql/ws). A link may carry a
// query to open with: /graphql#query=<URL-encoded GraphQL>.
(function () {
  "use strict";
  var KEY = "roster.token";
  var form = document.getElementById("token-bar");
  var input = document.getElementById("token");
  var state = document.getElementById("token-state");
  var scheme = location.protocol === "https:" ? "wss://" : "ws://";
  var base = GraphiQL.createFetcher({
    url: location.origin + "/graphql",
    subscriptionUrl: scheme + location.host + "/graphql/ws",
  });

  function token() {
    return localStorage.getItem(KEY) || "";
  }

  function fetcher(params, options) {
    if (!token()) {
      // Every operation needs a token: answer here rather than with a 401 from the server.
      return Promise.resolve({
        errors: [{ message: "Paste a bearer token into the field at the top of the page first." }],
      });
    }
    var headers = Object.assign({}, options && options.headers, {
      Authorization: "Bearer " + token(),
    });
    return base(params, Object.assign({}, options, { headers: headers }));
  }

  function initialQuery() {
    var hash = new URLSearchParams(location.hash.slice(1));
    return hash.get("query") || undefined;
  }

  var root = ReactDOM.createRoot(document.getElementById("graphiql"));
  var generation = 0;

  function render() {
    generation += 1;
    state.textContent = token()
      ? "requests carry this token"
      : "no token: every operation answers UNAUTHENTICATED";
    // A new key remounts GraphiQL, so the schema is fetched again with the new token.
    root.render(
      React.createElement(GraphiQL, {
        key: generation,
        fetcher: fetcher,
        defaultQuery: initialQuery(),
        query: generation === 1 ? initialQuery() : undefined,
      })
    );
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    localStorage.setItem(KEY, input.value.trim());
    render();
  });
  input.value = token();
  render();
})();
