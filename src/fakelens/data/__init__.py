"""Data: the offline pool of real photographs, faces in them, and splits that keep people and photos apart."""
