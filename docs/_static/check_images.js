// For the docs' check in headless Chromium (tests/test_docs.py): once the page has loaded, the body says how many
// of its images loaded, as data-images-loaded="loaded/all".
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var loaded = images.filter(function (img) { return img.complete && img.naturalWidth > 0; }).length;
  document.body.setAttribute("data-images-loaded", loaded + "/" + images.length);
});
