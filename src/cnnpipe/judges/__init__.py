"""Independent judges that only measure: the ImageNet judge, the pixel classifier, and the classifier whose classes the stages visualize."""
