"""Offline data for the notebooks: arrays bundled with scikit-learn, or generated in code.

Nothing here downloads. ``load_wine`` and ``load_sample_images`` ship inside the
scikit-learn wheel.
"""
