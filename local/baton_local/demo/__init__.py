"""``baton demo``: a small document platform on the emulated stack (``run``), its
algorithm services (``algorithms``), its business app (``app``), what it reports
(``report``) and the sample documents it works on (``documents/``)."""
