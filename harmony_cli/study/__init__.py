"""Making and filling studies: build-dataset, rendering, import-legacy, the annotator simulator."""
