"""Datasets: the catalog (torch-free), downloads, preparation and loading."""
