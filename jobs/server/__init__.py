"""The pieces of `vidx serve`: the app factory, the JSON API, uploads and the library's videos, the
page and its media, admission, batching, health and metrics, and replicas on Ray Serve."""
