"""Thumbnails: `GET /images/<id>/thumbnail?size=256`, made on first request and stored.

`keys` names stored thumbnails and removes them with their image; `request` reads the format a
request asks for (images.api reads its size); `source` reads the image's bytes, hashing them, so that only
a thumbnail of bytes matching the document's sha256 is stored (thumbnails are shared by hash,
across users); `render` makes one in bounded memory (libvips shrinking while it decodes, a
pixel cap, Pillow for the rest; `offload` runs the hashing, the header and the render off
gevent's loop); `gate` bounds renders per process and makes each thumbnail
once while other requests for it wait; `response` puts them together with ETags and caching.
"""

from images.thumbnails.keys import (
    SIZES,
    THUMBNAIL_PREFIX,
    delete_thumbnails,
    thumbnail_keys,
    thumbnail_keys_of_ids,
)
from images.thumbnails.render import NotAnImage, plan_decoding, render_thumbnail
from images.thumbnails.request import AnyAcceptNegotiation, negotiate_format
from images.thumbnails.response import thumbnail_response

__all__ = [
    "SIZES",
    "THUMBNAIL_PREFIX",
    "AnyAcceptNegotiation",
    "NotAnImage",
    "delete_thumbnails",
    "negotiate_format",
    "plan_decoding",
    "render_thumbnail",
    "thumbnail_keys",
    "thumbnail_keys_of_ids",
    "thumbnail_response",
]
