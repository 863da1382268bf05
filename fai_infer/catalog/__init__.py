"""The catalogue contract every back end answers (``contract.BaseCatalog``), the local back
end (``local.Catalog``) and what both share: sources, basket merge, confidence, display.
Layer 4: imports store/, index/, model/, image/ and the base."""
