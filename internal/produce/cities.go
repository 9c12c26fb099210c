package produce

// centre is an exam centre: a French city where students sit the piscine.
type centre struct {
	Slug     string  // lower-case ASCII, used in student ids ("le-havre")
	Name     string  // display name
	Lat, Lon float64 // city centre (town hall), WGS 84 degrees
	Weight   int     // relative share of the student population
}

// centres are real French cities with their real coordinates. Weights
// roughly follow the size of each city's metropolitan area, so Paris has
// the largest cohort and Angoulême one of the smallest.
var centres = []centre{
	{"paris", "Paris", 48.8566, 2.3522, 30},
	{"lyon", "Lyon", 45.7640, 4.8357, 10},
	{"marseille", "Marseille", 43.2965, 5.3698, 9},
	{"lille", "Lille", 50.6292, 3.0573, 7},
	{"toulouse", "Toulouse", 43.6047, 1.4442, 8},
	{"bordeaux", "Bordeaux", 44.8378, -0.5792, 7},
	{"nantes", "Nantes", 47.2184, -1.5536, 6},
	{"strasbourg", "Strasbourg", 48.5734, 7.7521, 5},
	{"nice", "Nice", 43.7102, 7.2620, 5},
	{"rennes", "Rennes", 48.1173, -1.6778, 5},
	{"montpellier", "Montpellier", 43.6108, 3.8767, 5},
	{"mulhouse", "Mulhouse", 47.7508, 7.3359, 3},
	{"perpignan", "Perpignan", 42.6887, 2.8948, 3},
	{"angouleme", "Angoulême", 45.6484, 0.1562, 2},
	{"le-havre", "Le Havre", 49.4944, 0.1079, 3},
	{"grenoble", "Grenoble", 45.1885, 5.7245, 4},
	{"dijon", "Dijon", 47.3220, 5.0415, 3},
	{"clermont-ferrand", "Clermont-Ferrand", 45.7772, 3.0870, 3},
	{"tours", "Tours", 47.3941, 0.6848, 3},
	{"reims", "Reims", 49.2583, 4.0317, 3},
}

// jitterDeg is how far (in degrees, on each axis) a student sits from their
// centre: ±0.01° is about ±1.1 km north-south and ±0.7–0.8 km east-west
// at French latitudes.
const jitterDeg = 0.01
