// Starts Swagger UI on /docs (kept out of the page so that its Content-Security-Policy needs no inline script).
"use strict";
window.SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [window.SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
});
