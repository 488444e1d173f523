"""The lecture's convolution example worked out by hand, for the tests that check the
lecture stage's numbers (its unit tests and the tiny pipeline run)."""

# Worked out by hand from the 6x6 image. Filter 1 is +1 on its diagonal and -1 elsewhere, so
# each output is 2 * (diagonal sum of the patch) - (patch sum); filter 2 likewise with its
# middle column. Patch sums (stride 1):        diagonal sums:      middle-column sums:
#   3 3 3 3                                    3 1 0 1             1 1 1 1
#   3 3 4 3                                    0 2 2 0             1 1 1 2
#   3 3 4 3                                    0 0 2 2             1 1 1 2
#   3 2 4 3                                    3 0 1 1             1 1 0 3
STRIDE1_FILTER1 = [[3, -1, -3, -1], [-3, 1, 0, -3], [-3, -3, 0, 1], [3, -2, -2, -1]]
STRIDE1_FILTER2 = [[-1, -1, -1, -1], [-1, -1, -2, 1], [-1, -1, -2, 1], [-1, 0, -4, 3]]
# Stride 2 visits rows and columns 0 and 2 of the stride-1 positions.
STRIDE2 = [[[3, -3], [-3, 0]], [[-1, -1], [-1, -2]]]
# The largest value of each 2x2 quarter of the stride-1 maps.
MAXPOOL = [[[3, 0], [3, 1]], [[-1, 1], [0, 3]]]
