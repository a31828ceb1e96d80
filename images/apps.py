from django.apps import AppConfig


class ImagesConfig(AppConfig):
    name = "images"
    verbose_name = "Images"

    def ready(self) -> None:
        from images.runtime import metrics, request_hooks

        metrics.register()
        request_hooks.drop_unused_request_hooks()
