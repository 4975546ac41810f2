"""The action table of DICOM PS3.15 Annex E, Table E.1-1, Basic Application Level Confidentiality Profile.

This module owns only data: which action the basic profile prescribes for each public attribute, keyed by tag.
:mod:`medimg.io.deid` applies it. Action codes (PS3.15 E.3.1):

* ``D``  replace with a non-zero-length dummy value consistent with the VR
* ``Z``  replace with a zero-length value (or a dummy)
* ``X``  remove
* ``K``  keep
* ``C``  clean (replace identifying content with values of similar meaning)
* ``U``  replace with a non-zero-length UID, consistent within the set of instances
* combinations (``Z/D``, ``X/Z``, ``X/D``, ``X/Z/D``, ``X/Z/U*``): the first action unless a later one is needed
  to keep the object conformant; :mod:`medimg.io.deid` documents which one it picks.

Attributes are listed by pydicom keyword where pydicom's dictionary knows them, by 8-digit hexadecimal tag
otherwise (attributes added to the standard after pydicom's dictionary was built, or retired ones). Repeating
groups (curves 50xx, overlays 60xx) and private attributes are rules, not table entries: see
:func:`profile_action`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

__all__ = ["ACTIONS", "BASIC_PROFILE", "keyword_table", "profile_action"]

#: the action codes this table uses
ACTIONS = ("D", "Z", "X", "K", "C", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*")

_TABLE_SOURCE: dict[str, str] = {
    "X": """
        AcquisitionComments AcquisitionProtocolDescription ActualHumanPerformersSequence AdditionalPatientHistory
        AddressTrial AdmissionID AdmittingDate AdmittingDiagnosesCodeSequence AdmittingDiagnosesDescription
        AdmittingTime AffectedSOPInstanceUID Allergies AnnotationGroupDescription ApprovalStatusDateTime
        Arbitrary AssertionExpirationDateTime AuthorObserverSequence BeamDescription BolusDescription
        BranchOfService CalibrationDate CalibrationTime CameraOwnerName CassetteID CertifiedTimestamp
        ClinicalTrialProtocolEthicsCommitteeApprovalNumber ClinicalTrialSeriesDescription ClinicalTrialSeriesID
        ClinicalTrialTimePointDescription CommentsOnRadiationDose CommentsOnThePerformedProcedureStep
        CompensatorDescription ConfidentialityConstraintOnPatientDataDescription
        ConsultingPhysicianIdentificationSequence ContainerComponentID ContainerDescription
        ContentCreatorIdentificationCodeSequence ContentSequence ContrastBolusStartTime ContrastBolusStopTime
        ContributionDateTime ContributionDescription CountryOfResidence CreationDate CreationTime
        CurrentObserverTrial CurrentPatientLocation CurveDate CurveTime CustodialOrganizationSequence
        DataSetTrailingPadding DateOfDocumentOrVerbalTransactionTrial DateOfLastCalibration
        DateOfSecondaryCapture DateTimeOfLastCalibration DecompositionDescription DerivationDescription
        DeviceDescription DeviceSettingDescription DigitalSignaturesSequence DischargeDate
        DischargeDiagnosisDescription DischargeTime DisplacementReferenceLabel DistributionAddress
        DistributionName DoseReferenceDescription EntityDescription EntityName
        EquipmentFrameOfReferenceDescription EthicsCommitteeApprovalEffectivenessEndDate
        EthicsCommitteeApprovalEffectivenessStartDate EthnicGroup ExpectedCompletionDateTime
        FilterLookupTableDescription FindingsGroupRecordingDateTrial FindingsGroupRecordingTimeTrial
        FixationDeviceDescription FractionGroupDescription FrameComments GantryID GeneratorID
        GPSAltitude GPSAltitudeRef GPSAreaInformation GPSDateStamp GPSDestBearing GPSDestBearingRef
        GPSDestDistance GPSDestDistanceRef GPSDestLatitude GPSDestLatitudeRef GPSDestLongitude
        GPSDestLongitudeRef GPSDifferential GPSDOP GPSImgDirection GPSImgDirectionRef GPSLatitude
        GPSLatitudeRef GPSLongitude GPSLongitudeRef GPSMapDatum GPSMeasureMode GPSProcessingMethod
        GPSSatellites GPSSpeed GPSSpeedRef GPSStatus GPSTimeStamp GPSTrack GPSTrackRef GPSVersionID
        HL7DocumentEffectiveTime HumanPerformerName HumanPerformerOrganization IconImageSequence
        IdentifyingComments ImageComments ImagePresentationComments ImagingServiceRequestComments Impressions
        InstanceCoercionDateTime InstanceOriginStatus InstitutionAddress InstitutionalDepartmentName
        InstitutionalDepartmentTypeCodeSequence InsurancePlanIdentification IntendedFractionStartTime
        IntendedRecipientsOfResultsIdentificationSequence InterpretationApprovalDate InterpretationApprovalTime
        InterpretationApproverSequence InterpretationAuthor InterpretationDiagnosisDescription InterpretationID
        InterpretationIDIssuer InterpretationRecordedDate InterpretationRecordedTime InterpretationRecorder
        InterpretationText InterpretationTranscriber InterpretationTranscriptionDate
        InterpretationTranscriptionTime InterventionDrugStartTime InterventionDrugStopTime
        IssueDateOfImagingServiceRequest IssuerOfAdmissionID IssuerOfAdmissionIDSequence IssuerOfPatientID
        IssuerOfServiceEpisodeID IssuerOfServiceEpisodeIDSequence IssueTimeOfImagingServiceRequest
        LastMenstrualDate LensMake LensModel LensSerialNumber LensSpecification LongDeviceDescription MAC
        MakerNote MedicalAlerts MedicalRecordLocator MilitaryRank ModifiedAttributesSequence ModifiedImageDate
        ModifiedImageDescription ModifiedImageTime ModifyingDeviceID MultienergyAcquisitionDescription
        NameOfPhysiciansReadingStudy NamesOfIntendedRecipientsOfResults NetworkID NonconformingDataElementValue
        NonconformingModifiedAttributesSequence ObservationDateTrial ObservationStartDateTime
        ObservationTimeTrial Occupation OrderCallbackPhoneNumber OrderCallbackTelecomInformation OrderEnteredBy
        OrderEntererLocation OriginalAttributesSequence Originator OtherPatientIDs OtherPatientIDsSequence
        OtherPatientNames OverlayDate OverlayTime ParticipantSequence PatientAddress PatientAge
        PatientBirthName PatientBirthTime PatientInstitutionResidence PatientInsurancePlanCodeSequence
        PatientMotherBirthName PatientPrimaryLanguageCodeSequence PatientPrimaryLanguageModifierCodeSequence
        PatientReligiousPreference PatientSize PatientTelecomInformation PatientTelephoneNumbers PatientWeight
        PatientComments PatientSetupPhotoDescription PatientState PatientTransportArrangements
        PatientTreatmentPreparationMethodDescription PatientTreatmentPreparationProcedureParameterDescription
        PerformedLocation PerformedProcedureStepDescription PerformedProcedureStepEndDate
        PerformedProcedureStepEndDateTime PerformedProcedureStepEndTime PerformedProcedureStepID
        PerformedProcedureStepStartDate PerformedProcedureStepStartDateTime PerformedProcedureStepStartTime
        PerformedStationAETitle PerformedStationGeographicLocationCodeSequence PerformedStationName
        PerformedStationNameCodeSequence PerformingPhysicianName PerformingPhysicianIdentificationSequence
        PersonAddress PersonTelecomInformation PersonTelephoneNumbers PhysiciansOfRecord
        PhysiciansOfRecordIdentificationSequence PhysiciansReadingStudyIdentificationSequence
        PhysicianApprovingInterpretation PlateID PositionAcquisitionTemplateDescription
        PositionAcquisitionTemplateName PregnancyStatus PreMedication PrescriptionDescription
        PresentationCreationDate PresentationCreationTime PriorTreatmentDoseDescription
        ProcedureStepCancellationDateTime ProductExpirationDateTime PyramidDescription PyramidLabel
        RadiopharmaceuticalStartDateTime RadiopharmaceuticalStartTime RadiopharmaceuticalStopDateTime
        RadiopharmaceuticalStopTime ReasonForOmissionDescription ReasonForRequestedProcedureCodeSequence
        ReasonForStudy ReasonForTheImagingServiceRequest ReasonForTheRequestedProcedure ReasonForVisit
        ReasonForVisitCodeSequence ReceivingAE ReferencedDigitalSignatureSequence ReferencedPatientAliasSequence
        ReferencedPatientPhotoSequence ReferencedPatientSequence ReferencedSOPInstanceMACSequence
        ReferringPhysicianAddress ReferringPhysicianTelephoneNumbers ReferringPhysicianIdentificationSequence
        RegionOfResidence RequestAttributesSequence RequestedContrastAgent RequestedProcedureComments
        RequestedProcedureID RequestedProcedureLocation RequestedSeriesDescription RequestingAE
        RequestingPhysician RequestingService RespiratoryMotionCompensationTechniqueDescription
        ResponsibleOrganization ResponsiblePerson ResultsComments ResultsDistributionListSequence ResultsID
        ResultsIDIssuer RetrieveAETitle ROIDescription ROIGenerationDescription ROIObservationDescription
        ROIObservationLabel RTPlanDescription RTPlanName ScheduledAdmissionDate ScheduledAdmissionTime
        ScheduledDischargeDate ScheduledDischargeTime ScheduledHumanPerformersSequence
        ScheduledPatientInstitutionResidence ScheduledPerformingPhysicianName
        ScheduledPerformingPhysicianIdentificationSequence ScheduledProcedureStepDescription
        ScheduledProcedureStepEndDate ScheduledProcedureStepEndTime ScheduledProcedureStepExpirationDateTime
        ScheduledProcedureStepID ScheduledProcedureStepLocation ScheduledProcedureStepModificationDateTime
        ScheduledProcedureStepStartDate ScheduledProcedureStepStartDateTime ScheduledProcedureStepStartTime
        ScheduledStationAETitle ScheduledStationGeographicLocationCodeSequence ScheduledStationName
        ScheduledStationNameCodeSequence ScheduledStudyLocation ScheduledStudyLocationAETitle
        ScheduledStudyStartDate ScheduledStudyStartTime ScheduledStudyStopDate ScheduledStudyStopTime
        SeriesDescription ServiceEpisodeDescription ServiceEpisodeID SetupTechniqueDescription
        ShieldingDeviceDescription SlideIdentifier SmokingStatus SOPAuthorizationDateTime SourceManufacturer
        SpecialNeeds SpecimenAccessionNumber SpecimenDetailedDescription SpecimenShortDescription StationAETitle
        StructureSetDescription StructureSetName StudyArrivalDate StudyArrivalTime StudyComments
        StudyCompletionDate StudyCompletionTime StudyDescription StudyIDIssuer StudyReadDate StudyReadTime
        StudyVerifiedDate StudyVerifiedTime SubstanceAdministrationDateTime TelephoneNumberTrial
        TemplateLocalVersion TemplateVersion TextComments TextString
        TimeOfDocumentCreationOrVerbalTransactionTrial TimeOfLastCalibration TimeOfSecondaryCapture
        TimezoneOffsetFromUTC TopicAuthor TopicKeywords TopicSubject TopicTitle TransducerIdentificationSequence
        TreatmentSites UDISequence UniqueDeviceIdentifier VerbalSourceTrial
        VerbalSourceIdentifierCodeSequenceTrial VisitComments WaveformFilterDescription XRayDetectorLabel
        00081301 00081302 00081303 00081304 00100011 00100012 00100013 00100014 00100015 00100016
        00100041 00100042 00100043 00100044 00100045 00100046 00100047 00102161 00102162
        00120022 00120023 00120032 00120041 00120043 00120055 00120073 00181204 00181205
        0040A034 0040A035 0040B034 0040B036 0040B03B 0040B03F 3006002D 3006002E 3006004D 3006004E
    """,
    "Z": """
        AccessionNumber CalibrationDateTime ClinicalTrialCoordinatingCenterName ClinicalTrialProtocolName
        ClinicalTrialSiteID ClinicalTrialSiteName ClinicalTrialTimePointID ConceptualVolumeCombinationDescription
        ConceptualVolumeDescription ConsultingPhysicianName DeviceAlternateIdentifier
        FillerOrderNumberImagingServiceRequest FractionationNotes IssuerOfTheContainerIdentifierSequence
        IssuerOfTheSpecimenIdentifierSequence ManufacturerDeviceIdentifier ParticipationDateTime
        PatientBirthDate PatientID PatientName PatientSex PlacerOrderNumberImagingServiceRequest
        PrescriptionNotes PrescriptionNotesSequence RadiationGenerationModeDescription ReasonForSuperseding
        ReferringPhysicianName ReviewDate ReviewTime ROIInterpreter ROIName RTAccessoryDeviceSlotID
        RTAccessoryHolderSlotID RTPhysicianIntentNarrative SourceOfPreviousValues SpecimenPreparationSequence
        StructureSetDate StructureSetTime StudyDate StudyID StudyTime TreatmentTechniqueNotes
        VerifyingObserverIdentificationCodeSequence
    """,
    "Z/D": """
        ContentCreatorName ContentDate ContentTime ContrastBolusAgent InstructionPerformedDateTime
    """,
    "X/Z": """
        AcquisitionContextSequence AcquisitionDate AcquisitionTime BarcodeValue LabelText PatientSexNeutered
        ReferencedStudySequence RequestedProcedureDescription ReviewerName SourceSerialNumber
        TreatmentMachineName
    """,
    "X/D": """
        AcquisitionDeviceProcessingDescription DateOfLastDetectorCalibration DetectorID EndAcquisitionDateTime
        FirstTreatmentDate InstanceCreationDate IntendedPhaseEndDate IntendedPhaseStartDate
        MostRecentTreatmentDate ObservationDateTime OperatorIdentificationSequence ProtocolName RTPlanDate
        RTPlanTime RTTreatmentApproachLabel SeriesDate SeriesTime StartAcquisitionDateTime
        TimeOfLastDetectorCalibration TreatmentDate TreatmentSite TreatmentTime
    """,
    "X/Z/D": """
        AcquisitionDateTime DeviceSerialNumber InstanceCreationTime InstitutionCodeSequence InstitutionName
        OperatorsName ReferencedPerformedProcedureStepSequence StationName
    """,
    "X/Z/U*": """
        ReferencedImageSequence SourceImageSequence
    """,
    "D": """
        AcquisitionFieldOfViewLabel AnnotationGroupLabel AssertionDateTime AttributeModificationDateTime
        BeamHoldTransitionDateTime CertificateOfSigner ClinicalTrialProtocolEthicsCommitteeName
        ClinicalTrialProtocolID ClinicalTrialSponsorName ClinicalTrialSubjectID ClinicalTrialSubjectReadingID
        ContainerIdentifier ContextGroupLocalVersion ContextGroupVersion Date DateTime DecayCorrectionDateTime
        DestinationAE DeviceLabel DigitalSignatureDateTime EffectiveDateTime EncapsulatedDocument EntityLabel
        EntityLongLabel ExclusionStartDateTime FlowIdentifier FlowIdentifierSequence FrameAcquisitionDateTime
        FrameOriginTimestamp FrameReferenceDateTime FunctionalSyncPulse GraphicAnnotationSequence
        HangingProtocolCreationDateTime ImpedanceMeasurementDateTime InformationIssueDateTime InterlockDateTime
        InterlockDescription InterlockOriginDescription ModifyingSystem OverrideDateTime
        PersonIdentificationCodeSequence PersonName RadiationDoseIdentificationLabel
        RadiationDoseInVivoMeasurementLabel RadiationGenerationModeLabel ReasonForTheAttributeModification
        RecordedRTControlPointDateTime ReferencedDateTime RTPlanLabel RTPrescriptionLabel RTToleranceSetLabel
        SafePositionExitDate SafePositionExitTime SafePositionReturnDate SafePositionReturnTime
        SelectorAEValue SelectorASValue SelectorDAValue SelectorDTValue SelectorLOValue SelectorLTValue
        SelectorOBValue SelectorPNValue SelectorSHValue SelectorSTValue SelectorTMValue SelectorUNValue
        SelectorURValue SelectorUTValue SourceEndDateTime SourceIdentifier SourceStartDateTime
        SourceStrengthReferenceDate SourceStrengthReferenceTime SpecimenIdentifier StructureSetLabel Time
        TreatmentControlPointDate TreatmentControlPointTime TreatmentPositionGroupLabel
        TreatmentToleranceViolationDateTime TreatmentToleranceViolationDescription UserContentLabel
        UserContentLongLabel VerificationDateTime VerifyingObserverName VerifyingObserverSequence
        VerifyingOrganization XRayDetectorID XRaySourceID
    """,
    "U": """
        AcquisitionUID AnnotationGroupUID ConcatenationUID ConceptualVolumeUID ConstituentConceptualVolumeUID
        DeviceUID DigitalSignatureUID DimensionOrganizationUID DoseReferenceUID DosimetricObjectiveUID
        FailedSOPInstanceUIDList FiducialUID FrameOfReferenceUID InstanceCreatorUID IrradiationEventUID
        LargePaletteColorLookupTableUID ManufacturerDeviceClassUID MediaStorageSOPInstanceUID MultiplexGroupUID
        ObservationSubjectUIDTrial ObservationUID PaletteColorLookupTableUID PatientSetupUID
        PresentationDisplayCollectionUID PresentationSequenceCollectionUID PyramidUID
        ReferencedConceptualVolumeUID ReferencedDoseReferenceUID ReferencedDosimetricObjectiveUID
        ReferencedFiducialsUID ReferencedFrameOfReferenceUID
        ReferencedGeneralPurposeScheduledProcedureStepTransactionUID ReferencedObservationUIDTrial
        ReferencedSOPInstanceUID ReferencedSOPInstanceUIDInFile ReferencedTreatmentPositionGroupUID
        RelatedFrameOfReferenceUID RequestedSOPInstanceUID RTTreatmentPhaseUID SeriesInstanceUID SOPInstanceUID
        SourceConceptualVolumeUID SourceFrameOfReferenceUID SpecimenUID StorageMediaFileSetUID StudyInstanceUID
        SynchronizationFrameOfReferenceUID TargetUID TemplateExtensionCreatorUID
        TemplateExtensionOrganizationUID TrackingUID TransactionUID TreatmentPositionGroupUID
        TreatmentSessionUID UID 300A0054
    """,
}


def _to_tag(name: str) -> int:
    """A pydicom keyword or an 8-digit hexadecimal tag as an int."""
    if len(name) == 8 and all(c in "0123456789ABCDEFabcdef" for c in name):
        return int(name, 16)
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(name)
    if tag is None:  # pragma: no cover - guarded by a test over the whole table
        raise KeyError(f"'{name}' is not a keyword in pydicom's data dictionary")
    return int(tag)


def _build() -> dict[int, str]:
    table: dict[int, str] = {}
    for action, names in _TABLE_SOURCE.items():
        for name in names.split():
            tag = _to_tag(name)
            if tag in table:  # pragma: no cover - guarded by a test
                raise ValueError(f"'{name}' listed twice in the basic profile table")
            table[tag] = action
    return table


#: tag (int) -> action code of Table E.1-1, basic profile column
BASIC_PROFILE: Mapping[int, str] = MappingProxyType(_build())

#: actions of the repeating groups and private attributes (Table E.1-1 rows with 'xx')
CURVE_GROUP_ACTION = "X"  # (50xx,xxxx) curve data, retired
OVERLAY_ACTION = "X"  # (60xx,3000) Overlay Data and (60xx,4000) Overlay Comments
PRIVATE_ACTION = "X"  # all private attributes


def profile_action(tag: int) -> str | None:
    """The basic-profile action for a tag, or None when Table E.1-1 does not list it (the attribute is kept).

    >>> profile_action(0x00100010), profile_action(0x0020000D), profile_action(0x00280010) is None
    ('Z', 'U', True)
    >>> profile_action(0x60004000), profile_action(0x00091001)
    ('X', 'X')
    """
    group = tag >> 16
    if group % 2 == 1:
        return PRIVATE_ACTION
    if 0x5000 <= group <= 0x50FF:
        return CURVE_GROUP_ACTION
    if 0x6000 <= group <= 0x60FF and (tag & 0xFFFF) in (0x3000, 0x4000):
        return OVERLAY_ACTION
    return BASIC_PROFILE.get(tag)


def keyword_table() -> dict[str, str]:
    """The table as ``{keyword or hex tag: action}``, for documentation and tests."""
    from pydicom.datadict import keyword_for_tag

    return {(keyword_for_tag(t) or f"{t:08X}"): a for t, a in sorted(BASIC_PROFILE.items())}
