"use strict";
// Swagger UI on this ingress's own OpenAPI document. The key given to Authorize
// stays in this tab's memory (no persistAuthorization: nothing in localStorage);
// no validator badge, which would send the document to swagger.io.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
  deepLinking: true,
  docExpansion: "list",
  defaultModelsExpandDepth: 1,
  displayRequestDuration: true,
  tryItOutEnabled: true,
  validatorUrl: null,
});
