"""Test-only STUB of ``torchvision.transforms.functional`` (see the package docstring): imported by ``ofa``, never
called by the tests."""
