"""Local ModelsLab-compatible server (development and tests only; not shipped in the extension).

Run it with `python -m server --help`. It speaks the Image-to-3D contract of /work/shared/api-contract.md,
really reconstructs a coloured, closed mesh from the image (server/reconstruct.py), and can inject the
faults listed in server/README.md.
"""

__version__ = "1.0.0"
