"""Who owns the images a request may touch."""

from __future__ import annotations

from django.conf import settings
from rest_framework.exceptions import NotAuthenticated
from rest_framework.request import Request

from images.store.repository import ImageRepository


def request_owner(request: Request) -> str | None:
    """The user id under IMAGE_SCOPE=user, else None (every image is visible)."""
    if settings.IMAGE_SCOPE != "user":
        return None
    user = getattr(request, "user", None)
    user_id = getattr(user, "user_id", None)
    if not user_id:
        raise NotAuthenticated("IMAGE_SCOPE=user needs an authenticated user with an id")
    return user_id


def repository_for(request: Request) -> ImageRepository:
    return ImageRepository(owner=request_owner(request))
