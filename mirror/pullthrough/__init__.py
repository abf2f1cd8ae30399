"""Pull-through services: blobs and manifests fetched from upstream, verified, cached."""
