"""Streamlit annotation page."""
