"""Routes of the contract (no trailing slashes, as the original), plus docs, health and metrics."""

from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from images.api.views.archives import ExportView, ImportView
from images.api.views.changes import ChangeFeedView
from images.api.views.duplicates import DuplicateListView, LeakListView, SimilarImageListView
from images.api.views.fields import FieldListView, FieldValuesView
from images.api.views.gallery import GalleryView
from images.api.views.images import ImageViewSet
from images.api.views.links import SignedExportUrlView, SignedImageUrlView
from images.api.views.service import InfoView, LiveView, ReadyView
from images.thumbnails import AnyAcceptNegotiation

images = ImageViewSet.as_view(
    {"get": "list_images", "post": "create", "patch": "bulk_update", "delete": "bulk_destroy"}
)
image = ImageViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "put": "update", "delete": "destroy"}
)
image_file = ImageViewSet.as_view({"get": "download", "head": "download"})
image_thumbnail = ImageViewSet.as_view(
    {"get": "thumbnail", "head": "thumbnail"}, content_negotiation_class=AnyAcceptNegotiation
)

urlpatterns = [
    path("", InfoView.as_view(), name="info"),
    path("images", images, name="images"),
    path("images/duplicates", DuplicateListView.as_view(), name="image-duplicates"),
    path("images/leaks", LeakListView.as_view(), name="image-leaks"),
    path("images/<str:pk>", image, name="image"),
    path("images/<str:pk>/image", image_file, name="image-file"),
    path("images/<str:pk>/file", image_file, name="image-file-alias"),
    path("images/<str:pk>/thumbnail", image_thumbnail, name="image-thumbnail"),
    path("images/<str:pk>/url", SignedImageUrlView.as_view(), name="image-url"),
    path("images/<str:pk>/similar", SimilarImageListView.as_view(), name="image-similar"),
    path("export/url", SignedExportUrlView.as_view(), name="export-url"),
    path("changes", ChangeFeedView.as_view(), name="changes"),
    path("fields", FieldListView.as_view(), name="fields"),
    path("gallery/", GalleryView.as_view(), name="gallery"),
    path("gallery", RedirectView.as_view(url="/gallery/", query_string=True)),
    path("fields/<str:field>", FieldValuesView.as_view(), name="field-values"),
    path("export", ExportView.as_view(), name="export"),
    path("import", ImportView.as_view(), name="import"),
    path("health/live", LiveView.as_view(), name="health-live"),
    path("health/ready", ReadyView.as_view(), name="health-ready"),
    path("docs/schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("docs", RedirectView.as_view(url="/docs/", permanent=True)),
    path("", include("django_prometheus.urls")),
]

handler400 = "images.api.views.service.bad_request"
handler404 = "images.api.views.service.not_found"
handler500 = "images.api.views.service.server_error"
