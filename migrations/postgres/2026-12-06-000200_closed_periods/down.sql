DROP TABLE closed_charges;
DROP TABLE closed_periods;
