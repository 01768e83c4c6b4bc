"""Code lists of the synthetic estate: ICD-10-SE, KVÅ, ATC/NPL, NPU lab analyses and free text.

The local lab codes in :data:`LAB_LOCAL_TO_NPU` are the crosswalk the pipeline needs to map
Melior's local analysis codes to NPU; :data:`UNMAPPED_LOCAL_LAB_CODES` are local codes that are
deliberately *not* in it (they are planted as ``unmapped_code`` defects).
"""

from __future__ import annotations

from dataclasses import dataclass

# --- diagnoses (ICD-10-SE, dotted upper-case form; the writer varies the notation) -------------
ICD10_SE: list[tuple[str, str]] = [
    ("I21.9", "Akut hjärtinfarkt, ospecificerad"),
    ("I10.9", "Essentiell hypertoni"),
    ("I48.9", "Förmaksflimmer och förmaksfladder, ospecificerat"),
    ("I50.9", "Hjärtsvikt, ospecificerad"),
    ("I63.9", "Cerebral infarkt, ospecificerad"),
    ("E11.9", "Diabetes mellitus typ 2 utan komplikationer"),
    ("E10.9", "Diabetes mellitus typ 1 utan komplikationer"),
    ("E66.9", "Fetma, ospecificerad"),
    ("E03.9", "Hypotyreos, ospecificerad"),
    ("J18.9", "Pneumoni, ospecificerad"),
    ("J44.9", "Kroniskt obstruktiv lungsjukdom, ospecificerad"),
    ("J45.9", "Astma, ospecificerad"),
    ("J06.9", "Akut övre luftvägsinfektion, ospecificerad"),
    ("N39.0", "Urinvägsinfektion utan angiven lokalisation"),
    ("N18.9", "Kronisk njursjukdom, ospecificerad"),
    ("K35.8", "Akut appendicit, annan och ospecificerad"),
    ("K80.2", "Gallsten utan kolecystit"),
    ("K21.9", "Gastroesofageal refluxsjukdom utan esofagit"),
    ("M17.1", "Primär gonartros, ensidig"),
    ("M16.1", "Primär koxartros, ensidig"),
    ("M54.5", "Lumbago"),
    ("S72.0", "Fraktur på lårbenshalsen"),
    ("S52.5", "Fraktur på nedre änden av strålbenet"),
    ("F32.9", "Depressiv episod, ospecificerad"),
    ("F41.1", "Generaliserat ångestsyndrom"),
    ("F10.2", "Psykiska störningar och beteendestörningar orsakade av alkohol: beroende"),
    ("G40.9", "Epilepsi, ospecificerad"),
    ("G45.9", "Transitorisk cerebral ischemisk attack, ospecificerad"),
    ("C50.9", "Bröstcancer, ospecificerad"),
    ("C61.9", "Malign tumör i prostata"),
    ("C18.9", "Malign tumör i tjocktarmen, ospecificerad"),
    ("D50.9", "Järnbristanemi, ospecificerad"),
    ("R07.4", "Bröstsmärtor, ospecificerade"),
    ("R10.4", "Andra och ospecificerade buksmärtor"),
    ("R55.9", "Svimning och kollaps"),
    ("O80.0", "Spontanförlossning i huvudbjudning"),
    ("Z86.1A", "Genomgången covid-19"),
    ("U07.1", "Covid-19, virus identifierat"),
    ("A41.9", "Sepsis, ospecificerad"),
    ("L03.1", "Cellulit i andra delar av extremiteterna"),
]

# Free text where a code was expected (``invalid_code`` defects in DIAGNOSKOD).
ICD_FREE_TEXT: list[str] = [
    "hjärtinfarkt",
    "se anteckning",
    "diabetes typ 2",
    "fraktur höger höft",
    "lunginflammation?",
    "ej angiven",
    "enl. remiss",
    "misstänkt sepsis",
]

# --- procedures (KVÅ) -------------------------------------------------------------------------
KVA_SURGICAL: list[str] = [
    "JAB30",
    "NFB49",
    "NFB62",
    "NGB49",
    "JKA21",
    "JEA01",
    "FNG05",
    "NHG12",
    "LCD01",
    "KEC00",
    "JFB96",
    "QDB05",
    "ABC56",
    "NCJ49",
    "TJF10",
]
KVA_MEDICAL: list[str] = [
    "DT016",
    "AQ014",
    "DG001",
    "AF021",
    "XS100",
    "DV052",
    "AV078",
    "DT022",
    "AQ020",
    "XF001",
    "DV053",
    "GD001",
]
# Malformed KVÅ codes (``invalid_code`` defects in KVA_KOD).
KVA_MALFORMED: list[str] = ["AB1", "12345", "NFB4", "JAB3", "1AB23", "ABCDEF", "DT01", "N-FB49"]

# --- medication (ATC, NPL-id, product, dosage) ------------------------------------------------
# NPL-ids are 14 digits in the shape of the national register's ids (date-like prefix + serial);
# they are invented for the synthetic estate.
DRUGS: list[tuple[str, str, str]] = [
    ("A10BA02", "20081020000021", "Metformin Teva 500 mg tablett"),
    ("C07AB02", "19980331000015", "Metoprolol Sandoz 50 mg depottablett"),
    ("N02BE01", "19960926000042", "Alvedon 500 mg tablett"),
    ("C10AA05", "20090410000104", "Atorvastatin Krka 20 mg tablett"),
    ("B01AC06", "19870501000019", "Trombyl 75 mg tablett"),
    ("C09AA05", "20050606000078", "Ramipril Actavis 5 mg tablett"),
    ("C03CA01", "19650409000036", "Furix 40 mg tablett"),
    ("A02BC01", "20030318000057", "Omeprazol Mylan 20 mg enterokapsel"),
    ("H03AA01", "19960219000063", "Levaxin 100 mikrog tablett"),
    ("N06AB10", "20020130000098", "Escitalopram Orion 10 mg tablett"),
    ("R03AC02", "19720804000011", "Ventoline Evohaler 0,1 mg/dos inhalationsspray"),
    ("B01AF01", "20080930000105", "Xarelto 20 mg tablett"),
    ("J01CE02", "19540101000082", "Kåvepenin 1 g tablett"),
    ("N05CF01", "19900627000020", "Zopiklon Mylan 5 mg tablett"),
    ("A10AE04", "20000609000037", "Lantus 100 E/ml injektionsvätska"),
    ("C08CA01", "19930421000046", "Amlodipin Bluefish 5 mg tablett"),
]
DOSAGES: list[str] = [
    "1 tablett x 1",
    "1 tablett x 2",
    "1 tablett morgon; 1 tablett kväll",
    "2 tabletter vid behov, högst 8 per dygn",
    "1 tablett till natten vid behov",
    "Enligt ordination",
    "20 E s.c. till kvällen",
    "1-2 doser vid behov",
    "1 tablett x 3 i 10 dagar",
    "½ tablett dagligen",
]

# --- laboratory -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Analyte:
    """An NPU-coded analysis and how its synthetic results are drawn and written."""

    code: str
    name: str
    unit: str
    reference: str  # Swedish notation: ``3,5-4,6``, ``<5``
    centre: float
    spread: float
    decimals: int
    lognormal: bool = False
    below: float | None = None  # results under this are written ``<below``
    above: float | None = None  # results over this are written ``>above``


ANALYTES: list[Analyte] = [
    Analyte("NPU02319", "B-Hemoglobin (Hb)", "g/L", "117-153", 134, 15, 0),
    Analyte("NPU02593", "B-Leukocyter", "x10(9)/L", "3,5-8,8", 7.2, 2.6, 1, below=0.5),
    Analyte("NPU03568", "B-Trombocyter", "x10(9)/L", "165-387", 255, 70, 0),
    Analyte("NPU03429", "P-Natrium", "mmol/L", "137-145", 140, 3.2, 0),
    Analyte("NPU03230", "P-Kalium", "mmol/L", "3,5-4,6", 4.1, 0.4, 1),
    Analyte("NPU18016", "P-Kreatinin", "µmol/L", "45-90", 80, 0.35, 0, lognormal=True),
    Analyte("NPU19748", "P-CRP", "mg/L", "<5", 4, 1.3, 0, lognormal=True, below=0.8, above=200),
    Analyte("NPU01370", "P-Bilirubin", "µmol/L", "5-25", 10, 0.5, 0, lognormal=True, below=3),
    Analyte("NPU19673", "P-Albumin", "g/L", "36-45", 39, 4.5, 0),
    Analyte("NPU04169", "P-Kalcium", "mmol/L", "2,15-2,50", 2.32, 0.12, 2),
    Analyte("NPU19651", "P-ALAT", "µkat/L", "0,15-0,75", 0.4, 0.55, 2, lognormal=True, below=0.1),
    # Right-skewed like a real population (diabetes); a normal draw gave impossible values < 10.
    Analyte("NPU27300", "B-HbA1c", "mmol/mol", "31-46", 44, 0.25, 0, lognormal=True),
    Analyte(
        "NPU19763", "P-Ferritin", "mikrog/L", "25-310", 110, 0.8, 0, lognormal=True, above=2000
    ),
]

# Local analysis codes used by some Melior labs, with the NPU code each one means. This is the
# crosswalk the pipeline needs; it is also written to ``crosswalks_used.json`` in the estate.
LAB_LOCAL_TO_NPU: dict[str, str] = {
    "L-KREA": "NPU18016",
    "L-CRP": "NPU19748",
    "L-HB": "NPU02319",
    "L-K": "NPU03230",
    "L-NA": "NPU03429",
    "L-ALB": "NPU19673",
}
LAB_LOCAL_NAMES: dict[str, str] = {
    "L-KREA": "Krea",
    "L-CRP": "CRP snabb",
    "L-HB": "Hb patientnära",
    "L-K": "Kalium",
    "L-NA": "Natrium",
    "L-ALB": "Albumin",
}
# Local codes that are NOT in the crosswalk (``unmapped_code`` defects), with a name and unit.
UNMAPPED_LOCAL_LAB_CODES: list[tuple[str, str, str]] = [
    ("L-PROKAL", "Prokalcitonin", "mikrog/L"),
    ("L-LAKT", "Laktat", "mmol/L"),
    ("L-AMMON", "Ammoniak", "µmol/L"),
    ("L-VITD", "25-OH vitamin D", "nmol/L"),
    ("L-ZINK", "Zink", "µmol/L"),
]
assert not set(LAB_LOCAL_TO_NPU) & {code for code, _, _ in UNMAPPED_LOCAL_LAB_CODES}

# --- warnings (varningsinformation) -----------------------------------------------------------
WARNINGS: list[tuple[str, str, str]] = [
    ("Överkänslighet", "J01CE02", "Penicillinallergi – utslag och klåda"),
    ("Överkänslighet", "N02BA01", "Överkänslig mot acetylsalicylsyra"),
    ("Överkänslighet", "V08AB02", "Reaktion på jodkontrast 2015"),
    ("Allergi", "Z88.1", "Latexallergi, använd nitrilhandskar"),
    ("Smitta", "Z22.3", "MRSA-bärare; isoleringsrum vid inläggning"),
    ("Smitta", "B18.1", "Kronisk hepatit B"),
    ("Behandlingsuppgift", "Z92.1", "Behandlas med Waran – kontrollera PK(INR)"),
    ("Behandlingsuppgift", "Z95.0", "Pacemaker, ej MR utan samråd"),
]

# --- free text --------------------------------------------------------------------------------
NOTE_TYPES: list[str] = [
    "Inskrivningsanteckning",
    "Daganteckning",
    "Epikris",
    "Telefonanteckning",
    "Omvårdnadsanteckning",
    "Mottagningsanteckning",
]
# Sentences are joined with a space or a line break; some contain ``;`` or ``"`` on purpose.
NOTE_SENTENCES: list[str] = [
    "Pat inkommer med bröstsmärta sedan två timmar; EKG visar ST-höjning.",
    'Anamnes: "ont i magen" sedan igår, feber 38,5.',
    "Status: opåverkad, hjärta regelbunden rytm, inga blåsljud.",
    "Lungor: vesikulärt andningsljud bilateralt.",
    "Planering: återbesök om tre månader; kontroll av HbA1c och P-Kreatinin.",
    "Telefonkontakt med dotter som önskar återkoppling.",
    "Sår på vänster underben läker långsamt, omläggning två gånger i veckan.",
    "Smärtlindring med paracetamol ger god effekt.",
    "Mår bättre, äter och dricker väl. Mobiliseras med rollator.",
    "Bedömning: sannolikt virusinfektion, ingen antibiotika.",
    "Överrapporterat till avdelning 32; sängplats klar kl 14.",
    "Pat förstår given information och är överens om planen.",
    "Blodtryck 142/88, puls 76, saturation 97 %.",
    "Remiss skickad till ortopedmottagningen för bedömning av höftledsartros.",
    "Anhöriga informerade. Åter vid försämring.",
]
REFERRAL_QUESTIONS: list[str] = [
    "Frågeställning: ischemisk hjärtsjukdom? Vänligen bedöm.",
    "Höftsmärta sedan ett år, röntgen visar artros. Ställningstagande till operation.",
    "Återkommande urinvägsinfektioner; utredning önskas.",
    "Nydebuterad diabetes typ 2, HbA1c 68. Önskar kontakt med diabetessköterska.",
    "Förhöjt P-Kreatinin, sjunkande eGFR.\nNefrologisk bedömning?",
    "Långvarig hosta, rökare. Lungröntgen och spirometri?",
    "Minnesproblem enligt anhöriga; demensutredning.",
    "Knäskada efter fotboll, misstänkt korsbandsruptur.",
]
