// Fills the account form from a provider's preset as soon as the provider is chosen. Without
// JavaScript the "Fill in the preset" button does the same on the server.
(function () {
  "use strict";
  var form = document.querySelector("form[data-presets]");
  if (!form) {
    return;
  }
  var presets = JSON.parse(form.getAttribute("data-presets"));
  var provider = form.elements.namedItem("provider");
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
  });
})();
