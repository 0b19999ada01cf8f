"""The pieces of `vidx serve`: the JSON API, uploads and the library's videos, the page and its media."""
