"""Swedish given names, family names, streets and VGR municipalities for synthetic people."""

from __future__ import annotations

FEMALE_NAMES: list[str] = [
    "Anna", "Eva", "Maria", "Karin", "Kristina", "Lena", "Sara", "Kerstin", "Emma", "Ingrid",
    "Marie", "Malin", "Birgitta", "Jenny", "Inger", "Hanna", "Annika", "Linnéa", "Elin", "Ulla",
    "Ida", "Johanna", "Åsa", "Märta", "Maja", "Elsa", "Astrid", "Signe", "Gunnel", "Britt-Marie",
    "Anna-Karin", "Ebba", "Saga", "Alva", "Wilma", "Agnes", "Sofia", "Margareta", "Gunilla",
    "Louise", "Ylva", "Mona", "Siv", "Barbro", "Görel", "Solveig", "Lovisa", "Therése", "Désirée",
    "Stina",
]
MALE_NAMES: list[str] = [
    "Lars", "Anders", "Johan", "Per", "Erik", "Karl", "Nils", "Jan", "Mikael", "Hans",
    "Peter", "Olof", "Lennart", "Björn", "Göran", "Stefan", "Sven", "Bengt", "Åke", "Ulf",
    "Gunnar", "Mats", "Magnus", "Oskar", "Hugo", "Elias", "Axel", "Måns", "Jöns", "Örjan",
    "Sören", "Håkan", "Bo", "Kjell", "Leif", "Rickard", "Anton", "Viktor", "Emil", "Oliver",
    "Lucas", "Ludvig", "Arvid", "Sixten", "Tore", "Kent", "Roger", "Torbjörn", "Jöran", "André",
]
SURNAMES: list[str] = [
    "Andersson", "Johansson", "Karlsson", "Nilsson", "Eriksson", "Larsson", "Olsson",
    "Persson", "Svensson", "Gustafsson", "Pettersson", "Jonsson", "Jansson", "Hansson",
    "Bengtsson", "Jönsson", "Lindberg", "Jakobsson", "Magnusson", "Olofsson", "Lindström",
    "Lindqvist", "Lindgren", "Berg", "Axelsson", "Bergström", "Lundberg", "Lind", "Lundgren",
    "Lundqvist", "Mattsson", "Berglund", "Fredriksson", "Sandberg", "Henriksson", "Forsberg",
    "Sjöberg", "Wallin", "Engström", "Eklund", "Danielsson", "Lundin", "Håkansson", "Björk",
    "Bergman", "Gunnarsson", "Holm", "Wikström", "Samuelsson", "Isaksson", "Fransson",
    "Bergqvist", "Nyström", "Holmberg", "Arvidsson", "Löfgren", "Söderberg", "Nyberg",
    "Blomqvist", "Claesson", "Nordström", "Mårtensson", "Lundström", "Ström", "Åberg",
    "Öberg", "Häggström", "Bäckström", "Sjögren", "Hägglund", "Åström", "Ekström", "Söderström",
    "Näslund", "Sjöström", "Dahlström", "Strömberg", "Åkesson", "Göransson", "Lindahl",
    "Wästberg", "Källström", "Hellström", "Björklund", "Kärrman",
]
STREETS: list[str] = [
    "Storgatan", "Kungsgatan", "Drottninggatan", "Västra Hamngatan", "Ringvägen", "Skolgatan",
    "Järnvägsgatan", "Övre Husargatan", "Linnégatan", "Åsgatan", "Mölndalsvägen", "Björkvägen",
    "Ekvägen", "Tallvägen", "Lövängsvägen", "Kyrkogatan", "Nygatan", "Södra vägen",
    "Östra Larmgatan", "Ängsvägen", "Hagagatan", "Götgatan", "Älvsborgsgatan", "Smörslottsgatan",
    "Trädgårdsgatan", "Fältspatsgatan", "Lilla Bommen", "Skärgårdsvägen", "Högsbogatan",
    "Vänersborgsvägen", "Bryggaregatan", "Torggatan", "Stationsvägen", "Kvarnbacken",
]
# (postort as the post writes it, three-digit postnummer prefixes, weight, home site index)
MUNICIPALITIES: list[tuple[str, list[int], float, int]] = [
    ("GÖTEBORG", [411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 424, 426], 30.0, 0),
    ("MÖLNDAL", [431], 4.0, 0),
    ("PARTILLE", [433], 2.5, 0),
    ("MÖLNLYCKE", [435], 2.2, 0),
    ("LERUM", [443], 2.5, 5),
    ("ALINGSÅS", [441], 2.5, 5),
    ("KUNGÄLV", [442], 2.8, 4),
    ("STENUNGSUND", [444], 1.8, 4),
    ("BORÅS", [503, 504, 506, 507], 7.0, 3),
    ("ULRICEHAMN", [523], 1.6, 3),
    ("TROLLHÄTTAN", [461], 4.1, 1),
    ("VÄNERSBORG", [462], 2.5, 1),
    ("UDDEVALLA", [451], 3.5, 1),
    ("SKÖVDE", [541], 3.5, 2),
    ("LIDKÖPING", [531], 2.6, 2),
    ("FALKÖPING", [521], 2.2, 2),
    ("MARIESTAD", [542], 1.7, 2),
]
