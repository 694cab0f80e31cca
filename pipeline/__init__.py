"""wattstream: smart-meter data in, trustworthy time series and a live PV-surplus signal out."""
