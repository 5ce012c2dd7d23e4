"""Stage *calibration* (`rules/calibrate.smk`): the calibration token splits, from text
(`sources`) or sampled from the model itself (`sampling`), and layer 0's input."""
