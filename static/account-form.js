// Fills the account form from a provider's preset as soon as the provider is chosen, and shows
// the OAuth 2.0 fields only with OAuth 2.0 (the password fields only without it). Without
// JavaScript the "Fill in the preset" button does the same on the server, and every field shows.
(function () {
  "use strict";
  var form = document.querySelector("form[data-presets]");
  if (!form) {
    return;
  }
  var presets = JSON.parse(form.getAttribute("data-presets"));
  var provider = form.elements.namedItem("provider");
  var auth = form.elements.namedItem("auth_method");

  function setShown(names, shown) {
    names.forEach(function (name) {
      var input = form.elements.namedItem(name);
      var field = input && input.closest ? input.closest(".field") : null;
      if (field) {
        field.hidden = !shown;
      }
    });
  }

  function showAuthFields() {
    var oauth = auth.value === "oauth2";
    setShown(["oauth_grant", "transport"], oauth);
    setShown(["password_action", "password"], !oauth);
  }

  auth.addEventListener("change", showAuthFields);
  showAuthFields();
  provider.addEventListener("change", function () {
    var preset = presets[provider.value];
    if (!preset) {
      return; // "Other": the admin's own settings stay as typed
    }
    Object.keys(preset).forEach(function (name) {
      var input = form.elements.namedItem(name);
      if (input) {
        input.value = String(preset[name]);
      }
    });
    showAuthFields(); // a preset sets the authentication too
  });
})();
