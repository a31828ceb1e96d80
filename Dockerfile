# imagestore: python manage.py serve on 0.0.0.0:$APP_PORT, as a non-root user (set OIDC_JWKS_URI
# or keep the port private: with auth off anyone who reaches it can delete every image).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    APP_PORT=3000 \
    APP_HOST=0.0.0.0 \
    DATA_DIRECTORY=/var/lib/imagestore/data \
    UPLOADS_DIRECTORY=/var/lib/imagestore/uploads

WORKDIR /app
COPY requirements/base.txt requirements/base.txt
RUN pip install --no-cache-dir -r requirements/base.txt

COPY manage.py ./
COPY imagestore/ imagestore/
COPY images/ images/

RUN useradd --system --uid 10001 --home-dir /var/lib/imagestore imagestore \
    && mkdir -p /var/lib/imagestore \
    && chown -R imagestore /var/lib/imagestore
USER imagestore

EXPOSE 3000
CMD ["python", "manage.py", "serve"]
