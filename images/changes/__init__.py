"""The change feed: every change to the caller's images after a cursor, from a MongoDB change
stream (`GET /changes`).

- `cursor`: the opaque cursor (a change stream resume token as base64url text);
- `request`: what a read asks for and the bounds of its parameters (images.api reads them);
- `preimages`: turning on the collection's pre-images, which scope deletes to their owner;
- `stream`: opening the change stream, scoped, and what its failures mean to a client;
- `events`: one change stream event as one change of the feed;
- `feed`: reading a page of changes, waiting for the first one when asked to.
"""
